/**
 * The A2A gateway on the real server (`partykit dev`), driven by the A2A project's own
 * client (@a2a-js/sdk): a team agent serving `echo` and a slow `quote` that reports
 * progress, called by outside principals with bearer tokens.
 */

import type { SendMessageRequest } from "@a2a-js/sdk";
import {
  type Client,
  ClientFactory,
  ClientFactoryOptions,
  DefaultAgentCardResolver,
  JsonRpcTransportFactory,
} from "@a2a-js/sdk/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { defineContract } from "../client/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

const pricing = defineContract({
  echo: {
    input: z.object({ text: z.string() }),
    output: z.object({ text: z.string() }),
    description: "Says back what it is told",
  },
  quote: {
    input: z.object({ sku: z.string(), steps: z.number().int().default(3), delayMs: z.number().int().default(50) }),
    output: z.object({ sku: z.string(), price: z.number() }),
    description: "Prices a SKU, reporting each step",
  },
});

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
}, 120_000);
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** A team with `pricing-1` serving the contract; `aborted` collects quote calls whose signal fired. */
async function team() {
  const name = room.team("a2a");
  const agent = await room.agent("pricing-1", { team: name, role: "pricing" });
  const aborted: string[] = [];
  agent.serve(pricing, {
    echo: ({ text }) => ({ text }),
    quote: async ({ sku, steps, delayMs }, ctx) => {
      for (let i = 1; i <= steps; i++) {
        await new Promise((r) => setTimeout(r, delayMs));
        if (ctx.signal.aborted) {
          aborted.push(sku);
          throw new Error("aborted");
        }
        ctx.progress({ step: i, of: steps });
      }
      return { sku, price: 42 };
    },
  });
  await eventually(async () => {
    const res = await room.fetch(`/parties/main/${name}/agents`);
    const agents = (await res.json()) as { agent: string; methods: string[] }[];
    expect(agents.find((a) => a.agent === "pricing-1")?.methods).toEqual(["echo", "quote"]);
  });
  return { name, agent, aborted };
}

/** An SDK client for `path` (`pricing-1` or "" for the team) acting as `who`. */
async function a2aClient(teamName: string, path: string, who = "partner-1"): Promise<Client> {
  const token = await room.token(who, "partner", { team: teamName });
  const fetchImpl: typeof fetch = (url, init) => {
    const headers = new Headers(init?.headers);
    headers.set("authorization", `Bearer ${token}`);
    return fetch(url, { ...init, headers });
  };
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl })],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
    }),
  );
  return factory.createFromUrl(`http://${room.host}/parties/main/${teamName}/a2a/${path ? `${path}/` : ""}`);
}

// biome-ignore lint/suspicious/noExplicitAny: the SDK's results are read field by field.
type Loose = any;

/** A SendMessage request as the SDK takes it (ProtoJSON-decoded form). */
const message = (data: unknown, metadata?: Record<string, unknown>, messageId = crypto.randomUUID()) =>
  ({
    tenant: "",
    message: {
      messageId,
      role: 1, // ROLE_USER
      parts: [{ content: { $case: "data" as const, value: data as Record<string, unknown> } }],
      ...(metadata ? { metadata } : {}),
    },
  }) as unknown as SendMessageRequest & { message: { messageId: string } };

/** The kind and state of each stream event, for exact order checks. */
function describeEvent(event: { payload?: { $case: string; value: unknown } }): string {
  const p = event.payload;
  if (!p) return "?";
  const v = p.value as { status?: { state: number }; artifact?: { parts: { content: { value: unknown } }[] } };
  if (p.$case === "task" || p.$case === "statusUpdate") {
    const msg = (v.status as { message?: { parts: { content: { value: unknown } }[] } }).message;
    const data = msg?.parts[0]?.content.value;
    return `${p.$case}:${STATE[v.status?.state ?? 0]}${data && p.$case === "statusUpdate" ? ` ${JSON.stringify(data)}` : ""}`;
  }
  if (p.$case === "artifactUpdate") return `artifact ${JSON.stringify(v.artifact?.parts[0]?.content.value)}`;
  return p.$case;
}
const STATE = [
  "",
  "SUBMITTED",
  "WORKING",
  "COMPLETED",
  "FAILED",
  "CANCELED",
  "INPUT_REQUIRED",
  "REJECTED",
  "AUTH_REQUIRED",
];

async function rpcError(promise: Promise<unknown>): Promise<{ code?: number; message: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { code?: number; envelopeCode?: number; message: string; cause?: { envelopeCode?: number } };
    return { code: e.envelopeCode ?? e.code ?? e.cause?.envelopeCode, message: e.message };
  }
  throw new Error("expected an A2A error");
}

const QUOTE_STREAM = [
  "task:SUBMITTED",
  "statusUpdate:WORKING",
  'statusUpdate:WORKING {"step":1,"of":3}',
  'statusUpdate:WORKING {"step":2,"of":3}',
  'statusUpdate:WORKING {"step":3,"of":3}',
  'artifact {"sku":"X","price":42}',
  "statusUpdate:COMPLETED",
];

describe("A2A gateway on partykit dev", () => {
  it("serves an agent card and a team card from the live roster, with schemas, security and an ETag", async () => {
    const { name } = await team();
    const base = `/parties/main/${name}/a2a`;
    const res = await room.fetch(`${base}/pricing-1/.well-known/agent-card.json`);
    expect(res.status).toBe(200);
    const card = (await res.json()) as Loose;
    expect(card.name).toBe("pricing-1");
    expect(card.supportedInterfaces).toEqual([
      { url: `http://${room.host}${base}/pricing-1/`, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
    ]);
    expect(card.capabilities.streaming).toBe(true);
    expect(card.skills.map((s: { id: string }) => s.id)).toEqual(["echo", "quote"]);
    expect(card.skills[0].description).toBe("Says back what it is told");
    expect(card.securitySchemes.bearer.httpAuthSecurityScheme.scheme).toBe("Bearer");
    expect(card.securityRequirements).toEqual([{ schemes: { bearer: { list: [] } } }]);
    const schemas = card.capabilities.extensions[0].params;
    expect(schemas.echo.input).toMatchObject({ type: "object", properties: { text: { type: "string" } } });
    expect(schemas.quote.output.required).toEqual(["sku", "price"]);

    const etag = res.headers.get("etag") as string;
    expect(etag).toBeTruthy();
    const again = await room.fetch(`${base}/pricing-1/.well-known/agent-card.json`, {
      headers: { "if-none-match": etag },
    });
    expect(again.status).toBe(304);

    const teamCard = (await (await room.fetch(`${base}/.well-known/agent-card.json`)).json()) as Loose;
    expect(teamCard.name).toBe(name);
    expect(teamCard.description).toContain("pricing (pricing-1)");
    expect(teamCard.skills.map((s: { id: string }) => s.id)).toEqual(["pricing/echo", "pricing/quote"]);

    const client = await a2aClient(name, "pricing-1");
    expect((await client.getAgentCard()).skills.map((s) => s.id)).toEqual(["echo", "quote"]);
  });

  it("refuses requests without a token with 401 and WWW-Authenticate", async () => {
    const { name } = await team();
    const res = await fetch(`http://${room.host}/parties/main/${name}/a2a/pricing-1/`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "x" } }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
  });

  it("answers a request without A2A-Version (A2A 0.3) or with another version with -32009", async () => {
    const { name } = await team();
    const call = async (headers: Record<string, string>) => {
      const token = await room.token("partner-1", "agent", { team: name });
      const res = await fetch(`http://${room.host}/parties/main/${name}/a2a/pricing-1/`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...headers },
        body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "GetTask", params: { id: "x" } }),
      });
      return (await res.json()) as { id: number; error?: { code: number; message: string } };
    };
    expect(await call({})).toMatchObject({ id: 7, error: { code: -32009, message: expect.stringContaining("0.3") } });
    expect(await call({ "A2A-Version": "0.3" })).toMatchObject({ error: { code: -32009 } });
    expect(await call({ "A2A-Version": "1.0" })).toMatchObject({ error: { code: -32001 } });
  });

  it("delivers a message to a fire-and-forget method through the inbox and acknowledges it with a Message", async () => {
    const name = room.team("a2a-oneway");
    const notifier = await room.agent("mailer-1", { team: name, role: "mailer" });
    const got: unknown[] = [];
    notifier.serve(
      defineContract({
        notify: { input: z.object({ to: z.string() }), output: z.null(), oneWay: true, description: "Sends a note" },
      }),
      {
        notify: (input) => {
          got.push(input);
          return null;
        },
      },
    );
    await eventually(async () => {
      const agents = (await (await room.fetch(`/parties/main/${name}/agents`)).json()) as {
        agent: string;
        methods: string[];
      }[];
      expect(agents.find((a) => a.agent === "mailer-1")?.methods).toEqual(["notify"]);
    });
    const client = await a2aClient(name, "mailer-1");
    const sent = message({ to: "ops" }, { method: "notify" });
    const ack = (await client.sendMessage(sent)) as Loose;
    // A Message, not a Task: the note is stored for the recipient and handed over.
    expect(ack.messageId).toBeDefined();
    expect(ack.status).toBeUndefined();
    expect(JSON.stringify(ack)).toContain(sent.message.messageId);
    await eventually(() => expect(got).toEqual([{ to: "ops" }]));
  });

  it("SendMessage runs the call, GetTask and ListTasks find the task, a retried message id lands on it", async () => {
    const { name } = await team();
    const client = await a2aClient(name, "pricing-1");
    const sent = message({ text: "hi" }, { method: "echo" });
    const result = (await client.sendMessage(sent)) as Loose;
    expect(STATE[result.status.state]).toBe("COMPLETED");
    expect(result.artifacts[0].parts[0].content.value).toEqual({ text: "hi" });
    const got = (await client.getTask({ id: result.id, tenant: "" })) as Loose;
    expect(got.id).toBe(result.id);
    expect(got.artifacts[0].parts[0].content.value).toEqual({ text: "hi" });
    expect(got.history[0].messageId).toBe(sent.message.messageId);

    const retried = (await client.sendMessage(sent)) as Loose;
    expect(retried.id).toBe(result.id);

    const listed = await client.listTasks({ tenant: "", contextId: "", status: 0, pageToken: "" } as never);
    expect(listed.tasks.map((t) => t.id)).toEqual([result.id]);

    // The team's endpoint routes by metadata.method (one role serves it).
    const viaTeam = (await (
      await a2aClient(name, "")
    ).sendMessage(message({ text: "team" }, { method: "echo" }))) as Loose;
    expect(viaTeam.artifacts[0].parts[0].content.value).toEqual({ text: "team" });
  });

  it("streams progress as WORKING updates in exact order, then closes", async () => {
    const { name } = await team();
    const client = await a2aClient(name, "pricing-1");
    const seen: string[] = [];
    for await (const event of client.sendMessageStream(message({ sku: "X" }, { method: "quote" }))) {
      seen.push(describeEvent(event as never));
    }
    expect(seen).toEqual(QUOTE_STREAM);
  });

  it("CancelTask reaches the callee (its signal fires) and the task is CANCELED; -32001 and -32002", async () => {
    const { name, aborted } = await team();
    const client = await a2aClient(name, "pricing-1");
    const started = (await client.sendMessage({
      ...message({ sku: "SLOW", steps: 100, delayMs: 50 }, { method: "quote" }),
      configuration: { returnImmediately: true, acceptedOutputModes: [] },
    } as never)) as Loose;
    expect(["SUBMITTED", "WORKING"]).toContain(STATE[started.status.state]);
    const cancelled = (await client.cancelTask({ id: started.id, tenant: "" } as never)) as Loose;
    expect(STATE[cancelled.status.state]).toBe("CANCELED");
    await eventually(() => expect(aborted).toEqual(["SLOW"]));

    expect((await rpcError(client.cancelTask({ id: started.id, tenant: "" } as never))).code).toBe(-32002);
    expect((await rpcError(client.getTask({ id: "no-such-task", tenant: "" }))).code).toBe(-32001);
  });

  it("maps INVALID_INPUT to -32602 with the zod issues", async () => {
    const { name } = await team();
    const client = await a2aClient(name, "pricing-1");
    const error = await rpcError(client.sendMessage(message({ nope: 1 }, { method: "echo" })));
    expect(error.code).toBe(-32602);
    expect(error.message).toMatch(/echo input/);
  });

  it("keeps each principal's tasks its own", async () => {
    const { name } = await team();
    const mine = await a2aClient(name, "pricing-1", "partner-1");
    const theirs = await a2aClient(name, "pricing-1", "partner-2");
    const task = (await mine.sendMessage(message({ text: "secret" }, { method: "echo" }))) as Loose;
    expect((await rpcError(theirs.getTask({ id: task.id, tenant: "" }))).code).toBe(-32001);
    expect((await rpcError(theirs.cancelTask({ id: task.id, tenant: "" } as never))).code).toBe(-32001);
    const listed = await theirs.listTasks({ tenant: "", contextId: "", status: 0, pageToken: "" } as never);
    expect(listed.tasks).toEqual([]);
  });

  it("resumes a dropped stream from Last-Event-ID without losing an update", async () => {
    const { name } = await team();
    const client = await a2aClient(name, "pricing-1");
    const cut = new AbortController();
    const first: string[] = [];
    let taskId = "";
    try {
      for await (const event of client.sendMessageStream(message({ sku: "X", delayMs: 300 }, { method: "quote" }), {
        signal: cut.signal,
      })) {
        if ((event as Loose).payload.$case === "task") taskId = (event as Loose).payload.value.id;
        first.push(describeEvent(event as never));
        if (first.length === 3) cut.abort();
      }
    } catch {
      // The cut.
    }
    expect(first).toEqual(QUOTE_STREAM.slice(0, 3));
    // The task went on while nobody listened.
    await eventually(
      async () =>
        expect(STATE[((await client.getTask({ id: taskId, tenant: "" })) as Loose).status.state]).toBe("COMPLETED"),
      { timeoutMs: 10_000 },
    );

    const rest: string[] = [];
    for await (const event of client.resubscribeTask(
      { id: taskId, tenant: "" },
      {
        serviceParameters: { "Last-Event-ID": "3" },
      },
    )) {
      rest.push(describeEvent(event as never));
    }
    expect([...first, ...rest]).toEqual(QUOTE_STREAM);

    // Without Last-Event-ID: the task as it stands, every progress update in its history.
    const snapshot: Loose[] = [];
    for await (const event of client.resubscribeTask({ id: taskId, tenant: "" })) snapshot.push(event);
    expect(snapshot).toHaveLength(1);
    const task = snapshot[0].payload.value;
    expect(task.history.slice(1).map((m: Loose) => m.parts[0].content.value)).toEqual([
      { step: 1, of: 3 },
      { step: 2, of: 3 },
      { step: 3, of: 3 },
    ]);
  });

  it("keeps tasks across a room restart: GetTask and ListTasks answer after it", async () => {
    const { name } = await team();
    const client = await a2aClient(name, "pricing-1");
    const task = (await client.sendMessage(message({ text: "durable" }, { method: "echo" }))) as Loose;
    await room.kill("SIGKILL");
    await room.restart();
    // The agent reconnects on its own; its card is served again once it is back.
    const after = await eventually(() => a2aClient(name, "pricing-1"), { timeoutMs: 20_000 });
    const got = (await after.getTask({ id: task.id, tenant: "" })) as Loose;
    expect(STATE[got.status.state]).toBe("COMPLETED");
    expect(got.artifacts[0].parts[0].content.value).toEqual({ text: "durable" });
    const listed = await after.listTasks({ tenant: "", contextId: "", status: 0, pageToken: "" } as never);
    expect(listed.tasks.map((t) => t.id)).toEqual([task.id]);
  });
});
