/**
 * `crosstalk mcp` as an MCP host sees it: the SDK's own `Client` over stdio (spawning
 * `node bin/crosstalk.js mcp`, the compiled CLI) and over Streamable HTTP (`mcp --http`),
 * against a real `partykit dev` room where teammates are ordinary crosstalk agents.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  type CallToolResult,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { defineContract, type Team } from "../client/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin/crosstalk.js");

let teams = 0;
/** A fresh team per test: one room server, rooms apart. */
const uniqueTeam = (prefix: string): string => `${prefix}-${process.pid}-${++teams}`;

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** The seat's MCP client over stdio: `node bin/crosstalk.js mcp --team … --token …`. */
async function stdioClient(team: string, token: string, extra: string[] = []) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, "mcp", "--team", team, "--host", room.host, "--token", token, ...extra],
    env: { ...(process.env as Record<string, string>) },
    cwd: ROOT,
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const client = new Client({ name: "test-host", version: "1.0.0" });
  await client.connect(transport).catch((error: Error) => {
    throw new Error(`${error.message}\n${stderr}`);
  });
  return { client, stderr: () => stderr, [Symbol.asyncDispose]: () => client.close() };
}

/** `mcp --http --port 0` as a child process; resolves with its URL once it listens. */
async function httpServer(team: string, token: string) {
  const child: ChildProcess = spawn(
    process.execPath,
    // As the README has it: the token from the environment.
    [BIN, "mcp", "--team", team, "--host", room.host, "--http", "--port", "0"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, CROSSTALK_TOKEN: token } },
  );
  let stderr = "";
  const url = await new Promise<URL>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`mcp --http did not start:\n${stderr}`)), 20_000);
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
      const match = /on (http:\/\/\S+\/mcp)/.exec(stderr);
      if (match?.[1]) {
        clearTimeout(timer);
        resolveUrl(new URL(match[1]));
      }
    });
    child.once("exit", (code) => reject(new Error(`mcp --http exited with ${code}:\n${stderr}`)));
  });
  return {
    url,
    async [Symbol.asyncDispose]() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

const text = (result: unknown): string => ((result as CallToolResult).content[0] as { text: string }).text;
const structured = (result: unknown) => (result as CallToolResult).structuredContent as Record<string, unknown>;

/** A teammate serving `quote`, remembering each call's context. */
async function pricing(team: string) {
  const agent = await room.agent("pricing-1", { team, role: "pricing" });
  const calls: { from: string; correlationId?: string; input: unknown }[] = [];
  agent.handle("quote", (input, ctx) => {
    if ((input as { sku?: string }).sku === "gone") throw new Error("out of stock");
    if ((input as { sku?: string }).sku === "slow") ctx.progress({ step: "priced" });
    calls.push({ from: ctx.from, correlationId: ctx.correlationId, input });
    return { price: 42, for: ctx.from };
  });
  await eventually(() => expect(agent.agents().find((a) => a.agent === "pricing-1")?.methods).toEqual(["quote"]));
  return { agent, calls };
}

describe("over stdio", () => {
  it("lists tools from the team's served methods and calls one: a teammate answers, traced", async () => {
    const team = uniqueTeam("mcp");
    const { calls } = await pricing(team);
    await using seat = await stdioClient(team, await room.token("llm-1", "assistant", { team }));
    const { tools } = await seat.client.listTools();
    const names = tools.map((t) => t.name);
    expect(names).toEqual(
      expect.arrayContaining(["publish", "state_get", "state_set", "state_update", "history", "send", "call_quote"]),
    );
    const quote = tools.find((t) => t.name === "call_quote");
    expect(quote?.description).toContain("pricing-1 (role pricing)");
    expect(quote?.inputSchema).toMatchObject({ type: "object", properties: { input: {}, target: { type: "string" } } });

    const result = await seat.client.callTool({ name: "call_quote", arguments: { input: { sku: "X" } } });
    expect(result.isError, text(result)).toBeFalsy();
    expect(JSON.parse(text(result))).toEqual({ price: 42, for: "llm-1" });
    const { result: output, correlationId } = structured(result);
    expect(output).toEqual({ price: 42, for: "llm-1" });
    // The call is traced like any other: the teammate sees the correlation id the tool returned.
    expect(calls).toEqual([{ from: "llm-1", correlationId, input: { sku: "X" } }]);

    // A callee's failure is a tool error with its code and what to do.
    const failed = await seat.client.callTool({ name: "call_quote", arguments: { input: { sku: "gone" } } });
    expect(failed.isError).toBe(true);
    expect(text(failed)).toMatch(/^HANDLER_ERROR: out of stock\nWhat to do: The callee's handler threw/);
  });

  it("publishes, reads the stream's history, and reads and writes state with a teammate", async () => {
    const team = uniqueTeam("mcp");
    const mate = await room.agent("sales-1", { team, role: "sales" });
    await using seat = await stdioClient(team, await room.token("llm-1", "assistant", { team }));

    const published = await seat.client.callTool({
      name: "publish",
      arguments: { type: "deal.closed", data: { dealId: "D1", amount: 5 } },
    });
    expect(published.isError, text(published)).toBeFalsy();
    expect(JSON.parse(text(published))).toMatchObject({ stream: "main", seq: 1, duplicate: false });
    const events = [];
    for await (const e of mate.history({ stream: "main", from: 1 })) events.push(e);
    const [event] = events;
    expect(event).toMatchObject({
      type: "deal.closed",
      data: { dealId: "D1", amount: 5 },
      source: "llm-1",
      correlationId: structured(published).correlationId,
    });
    const page = await seat.client.callTool({ name: "history", arguments: { limit: 5 } });
    expect(JSON.parse(text(page))).toMatchObject({
      stream: "main",
      events: [{ seq: 1, type: "deal.closed" }],
      next: 2,
    });

    const set = await seat.client.callTool({
      name: "state_set",
      arguments: { ns: "deals", key: "D1", value: { stage: "won", amount: 5 } },
    });
    expect(set.isError, text(set)).toBeFalsy();
    const deals = mate.state("deals");
    await deals.ready;
    await eventually(() => expect(deals.get("D1")).toEqual({ stage: "won", amount: 5 }));
    expect(deals.meta("D1")?.updatedBy).toBe("llm-1");

    deals.update("D1", { owner: "sales-1" });
    await eventually(async () => {
      const got = await seat.client.callTool({ name: "state_get", arguments: { ns: "deals", key: "D1" } });
      expect(JSON.parse(text(got))).toEqual({ stage: "won", amount: 5, owner: "sales-1" });
    });
    const patched = await seat.client.callTool({
      name: "state_update",
      arguments: { ns: "deals", key: "D1", patch: { stage: "closed" } },
    });
    expect(JSON.parse(text(patched))).toMatchObject({ value: { stage: "closed", amount: 5, owner: "sales-1" } });
    await eventually(() => expect(deals.get("D1")).toMatchObject({ stage: "closed", owner: "sales-1" }));
  });

  it("tells the host when another agent writes a subscribed namespace or publishes to a subscribed stream", async () => {
    const team = uniqueTeam("mcp");
    const mate = await room.agent("sales-1", { team, role: "sales" });
    await using seat = await stdioClient(team, await room.token("llm-1", "assistant", { team }), ["--ns", "deals"]);
    const updated: string[] = [];
    seat.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));

    const { resources } = await seat.client.listResources();
    const uris = resources.map((r) => r.uri);
    expect(uris).toEqual(
      expect.arrayContaining([`crosstalk://${team}/state/deals`, `crosstalk://${team}/streams/main`]),
    );

    await seat.client.subscribeResource({ uri: `crosstalk://${team}/state/deals` });
    await seat.client.subscribeResource({ uri: `crosstalk://${team}/streams/main` });
    mate.state("deals").set("D7", { stage: "new" });
    await eventually(() => expect(updated).toContain(`crosstalk://${team}/state/deals`));
    const read = await seat.client.readResource({ uri: `crosstalk://${team}/state/deals` });
    expect(JSON.parse((read.contents[0] as { text: string }).text)).toEqual({ D7: { stage: "new" } });

    await mate.publish("deal.created", { dealId: "D7" });
    await eventually(() => expect(updated).toContain(`crosstalk://${team}/streams/main`));
    const stream = await seat.client.readResource({ uri: `crosstalk://${team}/streams/main` });
    expect(JSON.parse((stream.contents[0] as { text: string }).text)).toMatchObject({
      events: [{ type: "deal.created", data: { dealId: "D7" }, source: "sales-1" }],
    });
  });

  it("follows the live roster: a method that comes and goes adds and removes its tool, with list_changed", async () => {
    const team = uniqueTeam("mcp");
    await using seat = await stdioClient(team, await room.token("llm-1", "assistant", { team }));
    let changed = 0;
    seat.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    expect((await seat.client.listTools()).tools.map((t) => t.name)).not.toContain("call_summarize");

    const writer: Team = await room.agent("writer-1", { team, role: "writer" });
    const stop = writer.handle("summarize", (input) => ({
      summary: String((input as { text: string }).text).slice(0, 5),
    }));
    await eventually(() => expect(changed).toBeGreaterThan(0));
    expect((await seat.client.listTools()).tools.map((t) => t.name)).toContain("call_summarize");
    const result = await seat.client.callTool({
      name: "call_summarize",
      arguments: { input: { text: "hello world" }, target: "writer-1" },
    });
    expect(JSON.parse(text(result))).toEqual({ summary: "hello" });

    const before = changed;
    stop();
    await eventually(() => expect(changed).toBeGreaterThan(before));
    expect((await seat.client.listTools()).tools.map((t) => t.name)).not.toContain("call_summarize");
  });

  it("a forbidden tool call gets a tool error with the crosstalk code and what to do", async () => {
    const team = uniqueTeam("mcp");
    await pricing(team);
    const token = await room.token("reader-1", "assistant", { team, perms: ["state.read:>"] });
    await using seat = await stdioClient(team, token);
    // Only what the token may do is listed...
    const names = (await seat.client.listTools()).tools.map((t) => t.name);
    expect(names).toContain("state_get");
    expect(names).not.toContain("state_set");
    expect(names).not.toContain("call_quote");
    // ...and what it may not do is refused with a clear error, nothing sent.
    const refused = await seat.client.callTool({ name: "state_set", arguments: { ns: "deals", key: "D1", value: {} } });
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/^FORBIDDEN: this agent may not state\.write deals/);
    expect(text(refused)).toContain("What to do:");
    expect(structured(refused)).toMatchObject({ error: { code: "FORBIDDEN", retryable: false } });
    const call = await seat.client.callTool({ name: "call_quote", arguments: { input: {} } });
    expect(call.isError).toBe(true);
    expect(text(call)).toMatch(/^FORBIDDEN: this agent may not rpc\.call/);
    // Bad arguments and failing calls are tool errors too.
    const bad = await seat.client.callTool({ name: "state_get", arguments: { ns: "no/such" } });
    expect(text(bad)).toMatch(/^INVALID_ARGUMENT: bad arguments for state_get: ns:/);
  });
});

describe("over Streamable HTTP", () => {
  it("serves the same tools and resources to an HTTP client", async () => {
    const team = uniqueTeam("mcp");
    const { calls } = await pricing(team);
    const mate = await room.agent("sales-1", { team, role: "sales" });
    await using server = await httpServer(team, await room.token("llm-2", "assistant", { team }));
    const client = new Client({ name: "test-host", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(server.url));
    try {
      const names = (await client.listTools()).tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(["call_quote", "publish", "state_set", "history"]));
      const result = await client.callTool({ name: "call_quote", arguments: { input: { sku: "Y" } } });
      expect(JSON.parse(text(result))).toEqual({ price: 42, for: "llm-2" });
      expect(calls.at(-1)).toMatchObject({ from: "llm-2", correlationId: structured(result).correlationId });

      // The callee's progress reaches the host as MCP progress notifications.
      const progress: unknown[] = [];
      const slow = await client.callTool({ name: "call_quote", arguments: { input: { sku: "slow" } } }, undefined, {
        onprogress: (p) => void progress.push(p),
      });
      expect(JSON.parse(text(slow))).toEqual({ price: 42, for: "llm-2" });
      expect(progress).toEqual([{ progress: 1, message: JSON.stringify({ step: "priced" }) }]);

      const published = await client.callTool({ name: "publish", arguments: { type: "note.added", data: { n: 1 } } });
      expect(JSON.parse(text(published))).toMatchObject({ seq: 1 });

      const updated: string[] = [];
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updated.push(n.params.uri));
      await client.subscribeResource({ uri: `crosstalk://${team}/state/deals` });
      mate.state("deals").set("D9", { stage: "new" });
      await eventually(() => expect(updated).toContain(`crosstalk://${team}/state/deals`));
      const got = await client.callTool({ name: "state_get", arguments: { ns: "deals" } });
      expect(JSON.parse(text(got))).toEqual({ D9: { stage: "new" } });
    } finally {
      await client.close();
    }
  });
});

describe("tools from contracts", () => {
  it("gives a method served through a zod contract its input schema and description", async () => {
    const team = uniqueTeam("mcp-contract");
    const legal = await room.agent("legal-1", { team, role: "legal" });
    const contract = defineContract({
      approve: {
        description: "Approves a deal's contract, or says why not.",
        input: z.object({ deal: z.string(), amount: z.number().positive() }),
        output: z.object({ approved: z.boolean() }),
      },
    });
    legal.serve(contract, { approve: ({ amount }) => ({ approved: amount < 1_000_000 }) });
    await eventually(() => expect(legal.agents().find((a) => a.agent === "legal-1")?.info?.approve).toBeDefined());
    await using seat = await stdioClient(team, await room.token("llm-1", "assistant", { team }));
    const { tools } = await seat.client.listTools();
    const approve = tools.find((t) => t.name === "call_approve");
    expect(approve?.description).toContain("Approves a deal's contract");
    expect(approve?.inputSchema).toMatchObject({
      required: ["input"],
      properties: {
        input: { type: "object", properties: { deal: { type: "string" }, amount: { type: "number" } } },
      },
    });
    const result = await seat.client.callTool({
      name: "call_approve",
      arguments: { input: { deal: "D1", amount: 5 } },
    });
    expect(result.isError, text(result)).toBeFalsy();
    expect(JSON.parse(text(result))).toEqual({ approved: true });
  });
});
