/**
 * The `crosstalk` CLI against a real room: in-process through `main(argv, { stdout, stderr })`,
 * and as a real process (`node bin/crosstalk.js`, running the compiled dist/cli/ that the
 * test run builds first) for the bin, exit codes and SIGINT.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { main } from "../cli/main.ts";
import { type StoredEvent, traceFrom } from "../client/index.ts";
import { eventually, freePort, type RoomServer, startRoom } from "./harness.ts";
import { sink } from "./sink.ts";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin/crosstalk.js");

let room: RoomServer;
let dir: string;
beforeAll(async () => {
  room = await startRoom();
  dir = mkdtempSync(join(tmpdir(), "crosstalk-cli-"));
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Run = { code: number; stdout: string; stderr: string };

/** Runs the CLI in-process against the test room. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = sink();
  const err = sink();
  const code = await main(["--host", room.host, ...args], { stdout: out.stream, stderr: err.stream, env });
  return { code, stdout: out.text(), stderr: err.text() };
}

const json = (run: Run): unknown => {
  expect(run, run.stderr).toMatchObject({ code: 0 });
  return JSON.parse(run.stdout);
};

/** Runs `node bin/crosstalk.js` as a real process. */
function spawnCli(args: string[]): ChildProcess & { output: () => Run; closed: Promise<unknown> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  // `close` comes after `exit` once stdout and stderr have been read to their end.
  const closed = once(child, "close");
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return Object.assign(child, { closed, output: () => ({ code: child.exitCode ?? -1, stdout, stderr }) });
}

async function exited(child: ReturnType<typeof spawnCli>): Promise<Run> {
  await child.closed;
  return child.output();
}

describe("crosstalk CLI", () => {
  it("publishes, and tail --from start --json sees the events in order", async () => {
    const team = room.team("cli-tail");
    const first = json(await cli(["publish", team, "deal.created", '{"dealId":"D1"}']));
    expect(first).toMatchObject({ seq: 1, duplicate: false });
    expect(Object.keys(first as object).sort()).toEqual(["duplicate", "id", "seq", "ts"]);
    json(await cli(["publish", team, "note.added", '"plain text"']));
    json(await cli(["publish", team, "deal.closed", '{"dealId":"D1","amount":5}', "--id", "close-D1"]));
    // The same id again is a duplicate with the original seq.
    expect(json(await cli(["publish", team, "deal.closed", "{}", "--id", "close-D1"]))).toMatchObject({
      id: "close-D1",
      seq: 3,
      duplicate: true,
    });

    const all = await cli(["tail", team, "--from", "start", "--limit", "3", "--json"]);
    expect(all.code, all.stderr).toBe(0);
    const events = all.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as StoredEvent);
    expect(events.map((e) => [e.seq, e.type, e.data])).toEqual([
      [1, "deal.created", { dealId: "D1" }],
      [2, "note.added", "plain text"],
      [3, "deal.closed", { dealId: "D1", amount: 5 }],
    ]);
    expect(events[0]?.source).toMatch(/^cli-[0-9a-f]{8}$/);

    // A type filter and a seq start; pretty output is one line per event, no colors off a TTY.
    const deals = await cli(["tail", team, "--type", "deal.*", "--from", "2", "--limit", "1"]);
    expect(deals.code, deals.stderr).toBe(0);
    expect(deals.stdout).toMatch(
      /^\s+3 {2}\d{4}-\d\d-\d\dT[\d:.]+Z {2}deal\.closed {2}cli-[0-9a-f]{8} {2}\{"dealId":"D1","amount":5\}\n$/,
    );
    expect(deals.stdout).not.toContain("\u001b[");

    // Another stream is separate.
    json(await cli(["publish", team, "audit.entry", "{}", "--stream", "audit"]));
    const audit = await cli(["tail", team, "--stream", "audit", "--from", "start", "--limit", "1", "--json"]);
    expect(JSON.parse(audit.stdout)).toMatchObject({ stream: "audit", seq: 1, type: "audit.entry" });
  });

  it("tail follows live events from the end and stops when aborted", async () => {
    const team = room.team("cli-live");
    const sales = await room.agent("sales-1", { team, role: "sales" });
    await sales.publish("old.event", {});
    const out = sink();
    const stop = new AbortController();
    const running = main(["--host", room.host, "tail", team, "--json"], {
      stdout: out.stream,
      stderr: sink().stream,
      env: {},
      signal: stop.signal,
    });
    // The tail starts after the current end: keep publishing until it has seen one.
    await eventually(
      async () => {
        await sales.publish("new.event", { at: Date.now() });
        expect(out.text()).toContain('"new.event"');
      },
      { intervalMs: 200 },
    );
    stop.abort();
    expect(await running).toBe(0);
    expect(out.text()).not.toContain("old.event");
  });

  it("state prints a namespace and one entity; a missing key exits 1", async () => {
    const team = room.team("cli-state");
    const sales = await room.agent("sales-1", { team, role: "sales" });
    const deals = sales.state("deals");
    await deals.ready;
    deals.set("D1", { stage: "won", amount: 50_000 });
    deals.set("D2", { stage: "lost" });
    await eventually(async () =>
      expect(json(await cli(["state", team, "deals"]))).toEqual({
        D1: { stage: "won", amount: 50_000 },
        D2: { stage: "lost" },
      }),
    );
    expect(json(await cli(["state", team, "deals", "D1"]))).toEqual({ stage: "won", amount: 50_000 });
    const missing = await cli(["state", team, "deals", "D9"]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toContain('no entity "D9" in namespace deals');
    expect(json(await cli(["state", team, "empty"]))).toEqual({});
  });

  it("agents lists connected agents as a table and as JSON", async () => {
    const team = room.team("cli-agents");
    const legal = await room.agent("legal-1", { team, role: "legal" });
    legal.handle("review", () => ({ ok: true }));
    legal.setStatus({ busy: false });
    await eventually(async () => {
      const agents = json(await cli(["agents", team, "--json"])) as { agent: string }[];
      expect(agents).toEqual([
        expect.objectContaining({ agent: "legal-1", role: "legal", methods: ["review"], status: { busy: false } }),
      ]);
    });
    // A CLI run that just ended may linger in the roster for a moment: poll.
    await eventually(async () => {
      const table = await cli(["agents", team]);
      expect(table.code).toBe(0);
      const [header, row, ...rest] = table.stdout.trimEnd().split("\n");
      expect(header).toMatch(/^AGENT\s+ROLE\s+CONNECTED\s+METHODS\s+STATUS$/);
      expect(row).toMatch(/^legal-1\s+legal\s+\S+Z\s+review\s+\{"busy":false\}$/);
      expect(rest).toEqual([]);
    });
  });

  it("call prints the output; --role-target routes by role; NO_ROUTE exits 1 with the code", async () => {
    const team = room.team("cli-call");
    const legal = await room.agent("legal-1", { team, role: "legal" });
    legal.handle("review", (input, ctx) => ({ approved: true, input, caller: ctx.from }));
    legal.handle("fail", () => {
      throw new Error("no\u001b[31m way");
    });
    await eventually(() => expect(legal.agents().find((a) => a.agent === "legal-1")?.methods).toContain("fail"));

    const out = json(await cli(["--agent", "ops-cli", "call", team, "legal-1", "review", '{"dealId":"D1"}']));
    expect(out).toEqual({ approved: true, input: { dealId: "D1" }, caller: "ops-cli" });
    const byRole = json(await cli(["call", team, "legal", "review", "[1,2]", "--role-target", "--timeout", "5000"]));
    expect(byRole).toMatchObject({ approved: true, input: [1, 2] });

    const noMethod = await cli(["call", team, "legal-1", "nope", "{}"]);
    expect(noMethod).toMatchObject({ code: 1, stdout: "" });
    expect(noMethod.stderr).toBe("NO_ROUTE: agent legal-1 does not serve nope\n");
    const noAgent = await cli(["call", team, "ghost", "review", "{}"]);
    expect(noAgent.code).toBe(1);
    expect(noAgent.stderr).toMatch(/^NO_ROUTE: /);
    // A handler's message reaches stderr with its control characters escaped.
    const failed = await cli(["call", team, "legal-1", "fail", "null"]);
    expect(failed).toMatchObject({ code: 1, stderr: "HANDLER_ERROR: no\\u001b[31m way\n" });
  });

  it("send prints the recipients", async () => {
    const team = room.team("cli-send");
    const legal = await room.agent("legal-1", { team, role: "legal" });
    const got: unknown[] = [];
    legal.handle("notify", (input) => void got.push(input));
    await eventually(() => expect(legal.agents().find((a) => a.agent === "legal-1")?.methods).toContain("notify"));
    const sent = json(await cli(["send", team, "legal", "notify", '{"n":1}', "--role-target"])) as {
      id: string;
      recipients: string[];
    };
    expect(sent.recipients).toEqual(["legal-1"]);
    expect(typeof sent.id).toBe("string");
    await eventually(() => expect(got).toEqual([{ n: 1 }]));
  });

  it("replay --into writes the stream's history as NDJSON", async () => {
    const team = room.team("cli-replay");
    const sales = await room.agent("sales-1", { team, role: "sales" });
    for (let i = 1; i <= 5; i++) await sales.publish(i % 2 ? "deal.odd" : "deal.even", { i });
    const expected: StoredEvent[] = [];
    for await (const e of sales.history()) expected.push(e);
    expect(expected).toHaveLength(5);

    const part = join(dir, "part.ndjson");
    const run = await cli([
      "replay",
      team,
      "--stream",
      "main",
      "--from",
      "2",
      "--to",
      "4",
      "--into",
      part,
      "--progress",
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(`replayed 3 events (seq 2..4) from main into ${part}\n`);
    expect(run.stderr).toContain("100% 3/3");
    const lines = readFileSync(part, "utf8").split("\n");
    expect(lines.pop()).toBe("");
    expect(lines.map((l) => JSON.parse(l))).toEqual(expected.slice(1, 4));

    const whole = join(dir, "whole.ndjson");
    const all = await cli(["replay", team, "--into", whole]);
    expect(all.stdout).toBe(`replayed 5 events (seq 1..5) from main into ${whole}\n`);
    expect(all.stderr).toBe(""); // no progress bar off a terminal
    expect(readFileSync(whole, "utf8")).toBe(expected.map((e) => `${JSON.stringify(e)}\n`).join(""));

    // Past the head: nothing to write, an empty file.
    const none = join(dir, "none.ndjson");
    expect((await cli(["replay", team, "--from", "9", "--into", none])).stdout).toContain("replayed 0 events");
    expect(readFileSync(none, "utf8")).toBe("");
    // An unwritable path is a runtime error.
    const bad = await cli(["replay", team, "--into", join(dir, "no/such/dir/x.ndjson")]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ENOENT/);
  });

  it("trace prints the causal tree of a piece of work: events, calls and messages", async () => {
    const team = room.team("cli-trace");
    const legal = await room.agent("legal-1", { team, role: "legal" });
    const sales = await room.agent("sales-1", { team, role: "sales" });
    const mailer = await room.agent("mailer-1", { team, role: "mailer" });
    mailer.handle("notify", () => {});
    let callId = "";
    legal.handle("review", async (input, ctx) => {
      callId = ctx.callId ?? "";
      const started = await ctx.publish("review.started", input);
      const note = await ctx.publish("review.note", { n: 1 }, { causationId: started.id });
      await ctx.send("mailer-1", "notify", { dealId: "D1" }, { causationId: note.id });
      const done = await ctx.publish("review.done", {});
      await ctx.publish("review.audited", {}, { stream: "audit", causationId: done.id });
      return { ok: true };
    });
    await eventually(() => {
      const methods = sales.agents().flatMap((a) => a.methods);
      expect(methods).toContain("review");
      expect(methods).toContain("notify");
    });
    await sales.publish("noise", {}, { correlationId: "other-work" });
    const created = await sales.publish("deal.created", { dealId: "D1" }, { correlationId: "deal-D1" });
    await sales.call("legal-1", "review", { dealId: "D1" }, traceFrom({ id: created.id, correlationId: "deal-D1" }));
    expect(callId).not.toBe("");

    // Every stream by default: the tree spans two, so events carry their stream.
    const text = await cli(["trace", team, "deal-D1"]);
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.split("\n");
    expect(lines.pop()).toBe("");
    expect(lines[1]).toMatch(/^└─ call review sales-1 → legal-1 ok \d+ms$/);
    expect(lines.map((l, i) => (i === 1 ? "CALL" : l))).toEqual([
      "main#2 deal.created (sales-1)",
      "CALL",
      "   ├─ main#3 review.started (legal-1)",
      "   │  └─ main#4 review.note (legal-1)",
      "   │     └─ message notify legal-1 → mailer-1",
      "   └─ main#5 review.done (legal-1)",
      "      └─ audit#1 review.audited (legal-1)",
    ]);

    // --stream narrows the events (calls and messages stay); one stream, no prefix.
    const main = await cli(["trace", team, "deal-D1", "--stream", "main", "--stream", "main"]);
    expect(main.code, main.stderr).toBe(0);
    expect(main.stdout).not.toContain("audited");
    expect(main.stdout.split("\n").slice(2, 6)).toEqual([
      "   ├─ #3 review.started (legal-1)",
      "   │  └─ #4 review.note (legal-1)",
      "   │     └─ message notify legal-1 → mailer-1",
      "   └─ #5 review.done (legal-1)",
    ]);

    type Node = { kind: string; id: string; detail: Record<string, unknown>; children: Node[] };
    const tree = json(await cli(["trace", team, "deal-D1", "--json"])) as { correlationId: string; roots: Node[] };
    expect(tree.correlationId).toBe("deal-D1");
    expect(tree.roots).toHaveLength(1);
    expect(tree.roots[0]).toMatchObject({ kind: "event", id: created.id, detail: { type: "deal.created" } });
    const call = tree.roots[0]?.children[0];
    expect(call).toMatchObject({
      kind: "call",
      id: callId,
      correlationId: "deal-D1",
      causationId: created.id,
      detail: { from: "sales-1", to: "legal-1", method: "review", outcome: "ok" },
    });
    expect(call?.children.map((c) => [c.kind, c.detail.type ?? c.detail.method])).toEqual([
      ["event", "review.started"],
      ["event", "review.done"],
    ]);
    expect(call?.children[0]?.children[0]?.children[0]).toMatchObject({
      kind: "message",
      detail: { from: "legal-1", to: ["mailer-1"], method: "notify" },
    });

    // A failed call without a correlation id starts its own work, and shows its outcome.
    legal.handle("fail", () => {
      throw new Error("no");
    });
    await eventually(() => expect(sales.agents().flatMap((a) => a.methods)).toContain("fail"));
    let failedId = "";
    mailer.handle("probe", async (_input, ctx) => {
      failedId = ctx.trace.correlationId ?? "";
      await ctx.call("legal-1", "fail", null);
    });
    await eventually(() => expect(sales.agents().flatMap((a) => a.methods)).toContain("probe"));
    await expect(sales.call("mailer-1", "probe", null)).rejects.toMatchObject({ code: "HANDLER_ERROR" });
    const failed = await cli(["trace", team, failedId]);
    expect(failed.code, failed.stderr).toBe(0);
    expect(failed.stdout).toMatch(
      /^call probe sales-1 → mailer-1 HANDLER_ERROR \d+ms\n└─ call fail mailer-1 → legal-1 HANDLER_ERROR \d+ms\n$/,
    );

    const unknown = await cli(["trace", team, "no-such-work"]);
    expect(unknown).toMatchObject({ code: 1, stdout: "" });
    expect(unknown.stderr).toBe(
      "nothing found for correlationId no-such-work: no events in any stream, no recent calls or messages\n",
    );
    const elsewhere = await cli(["trace", team, "deal-D1", "--stream", "nowhere"]);
    expect(elsewhere.code, elsewhere.stderr).toBe(0); // the call and the message are still found
    expect(elsewhere.stdout).toMatch(/^call review/);
  });

  it("usage errors exit 2 without connecting; --help exits 0", async () => {
    // A closed port: reaching the network would fail with 1, not 2.
    const offline = ["--host", "127.0.0.1:1", "--connect-timeout", "200"];
    const usage = async (args: string[]) => {
      const err = sink();
      const code = await main([...offline, ...args], { stdout: sink().stream, stderr: err.stream, env: {} });
      return { code, stderr: err.text() };
    };
    expect(await usage(["call", "acme", "legal-1"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("missing required argument 'method'"),
    });
    expect(await usage(["call", "acme", "legal-1", "review", "{not json"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("not valid JSON"),
    });
    expect((await usage(["frobnicate"])).code).toBe(2);
    expect((await usage([])).code).toBe(2);
    expect((await usage(["tail", "acme", "--from", "yesterday"])).code).toBe(2);
    expect((await usage(["tail", "acme", "--limit", "0"])).code).toBe(2);
    expect((await usage(["tail", "acme", "--type", "deal.**"])).code).toBe(2);
    expect((await usage(["state", "bad team", "deals"])).code).toBe(2);
    expect((await usage(["publish", "acme", "Bad Type!", "{}"])).code).toBe(2);
    expect((await usage(["replay", "acme"])).stderr).toContain("--into");
    expect((await usage(["replay", "acme", "--from", "5", "--to", "2", "--into", "x"])).code).toBe(2);
    expect((await usage(["agents", "acme", "--bogus"])).code).toBe(2);

    const out = sink();
    expect(await main(["call", "--help"], { stdout: out.stream, stderr: sink().stream, env: {} })).toBe(0);
    expect(out.text()).toContain("Usage: crosstalk call [options] <team> <target> <method> <json>");
    expect(out.text()).toContain("--role-target");

    // Not a usage error: the room cannot be reached.
    expect(await usage(["agents", "acme"])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^OFFLINE: /) });
  });

  it("passes --token / CROSSTALK_TOKEN as the token query parameter; a refusal exits 1", async () => {
    const port = await freePort();
    const server = new WebSocketServer({ host: "127.0.0.1", port });
    const urls: string[] = [];
    server.on("connection", (socket, request) => {
      urls.push(request.url ?? "");
      socket.close(4401, "unauthorized");
    });
    try {
      await once(server, "listening");
      const env = { CROSSTALK_HOST: `127.0.0.1:${port}`, CROSSTALK_TOKEN: "from-env" };
      const run = async (args: string[]) => {
        const err = sink();
        const code = await main(args, { stdout: sink().stream, stderr: err.stream, env });
        return { code, stderr: err.text() };
      };
      expect(await run(["agents", "acme"])).toEqual({ code: 1, stderr: "UNAUTHORIZED: unauthorized\n" });
      expect(await run(["--token", "from-flag", "--agent", "me", "--role", "ops", "agents", "acme"])).toMatchObject({
        code: 1,
      });
      const params = urls.map((u) => new URL(u, "http://x").searchParams);
      expect(params.map((p) => p.get("token"))).toEqual(["from-env", "from-flag"]);
      expect(params[0]?.get("agent")).toMatch(/^cli-[0-9a-f]{8}$/);
      expect(params[0]?.get("role")).toBe("cli");
      expect([params[1]?.get("agent"), params[1]?.get("role")]).toEqual(["me", "ops"]);
    } finally {
      for (const client of server.clients) client.terminate();
      await new Promise((r) => server.close(r));
    }
  });

  it("runs as a real process: node bin/crosstalk.js", async () => {
    const help = await exited(spawnCli(["--help"]));
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: crosstalk");
    expect((await exited(spawnCli(["call", "acme"]))).code).toBe(2);

    const team = room.team("cli-bin");
    const legal = await room.agent("legal-1", { team, role: "legal" });
    legal.handle("review", (input) => ({ reviewed: input }));
    await eventually(() => expect(legal.agents().find((a) => a.agent === "legal-1")?.methods).toContain("review"));
    const called = await exited(spawnCli(["--host", room.host, "call", team, "legal-1", "review", '{"x":1}']));
    expect(called, called.stderr).toMatchObject({ code: 0 });
    expect(JSON.parse(called.stdout)).toEqual({ reviewed: { x: 1 } });
    const failed = await exited(spawnCli(["--host", room.host, "call", team, "legal-1", "nope", "{}"]));
    expect(failed).toMatchObject({ code: 1, stdout: "", stderr: "NO_ROUTE: agent legal-1 does not serve nope\n" });

    // tail runs until SIGINT, then closes cleanly with exit 0.
    await legal.publish("deal.created", { dealId: "D1" });
    const tail = spawnCli(["--host", room.host, "tail", team, "--from", "start", "--json"]);
    await eventually(() => expect(tail.output().stdout).toContain('"deal.created"'), { timeoutMs: 30_000 });
    tail.kill("SIGINT");
    const stopped = await exited(tail);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ seq: 1, type: "deal.created", source: "legal-1" });
  });
});
