/**
 * The test kit itself (`crosstalk/testing`): the in-process room behaves like the real one
 * where tests can tell (close codes at both ends, 1006 drops, order, a crash that keeps
 * storage); HTTP views and breakable sockets work the same on both rooms (the real pass keeps
 * PartyKit's HTTP routing tested); bad setup gets a typed error; the package entry resolves
 * to the compiled kit.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLOSE_CODES, PROTOCOL_VERSION } from "../client/index.ts";
import {
  createTestRoom,
  eventually,
  type MemoryCloseEvent,
  ROOMS,
  sleep,
  startRoom,
  type TestHost,
  TestKitError,
  type WebSocketLike,
} from "./harness.ts";

/** A raw socket's text frames and its close, through whichever WebSocket class the room hands out. */
function rawSocket(room: TestHost, team: string, query: string) {
  const ws: WebSocketLike = new room.WebSocket(`ws://${room.host}/parties/main/${team}?${query}`);
  const frames: { type: string; ref?: string }[] = [];
  ws.addEventListener("message", (e: { data: unknown }) => {
    if (typeof e.data === "string") frames.push(JSON.parse(e.data));
  });
  const closed = new Promise<{ code: number; reason: string; wasClean: boolean }>((r) =>
    ws.addEventListener("close", (e: { code: number; reason: string; wasClean: boolean }) =>
      r({ code: e.code, reason: String(e.reason), wasClean: e.wasClean }),
    ),
  );
  return { ws, frames, closed };
}

it("tests an agent in process: the README example", async () => {
  await using room = createTestRoom();
  const pricing = await room.agent("pricing-1", { role: "pricing" });
  pricing.handle("quote", async (input, ctx) => {
    const { sku } = input as { sku: string };
    await ctx.publish("quote.given", { sku, price: 42 });
    return { price: 42 };
  });
  const buyer = await room.agent("buyer-1");
  const seen: unknown[] = [];
  await buyer.subscribe("quote.*", (e) => void seen.push(e.data)).ready;
  expect(await buyer.call({ role: "pricing" }, "quote", { sku: "X" })).toEqual({ price: 42 });
  await eventually(() => expect(seen).toEqual([{ sku: "X", price: 42 }]));
});

describe("the in-process room", () => {
  it("delivers on a later macrotask, in order, and tells both ends of a close with its code", async () => {
    await using room = createTestRoom();
    const team = room.team("codes");
    const first = rawSocket(room, team, `agent=owner&v=${PROTOCOL_VERSION}`);
    expect(first.ws.readyState).toBe(0);
    await eventually(() => expect(first.frames[0]?.type).toBe("welcome"));
    // Sent frames are answered in order, never synchronously.
    for (const ref of ["a", "b", "c"])
      first.ws.send(JSON.stringify({ type: "lease.release", ref, name: "n", token: 1 }));
    expect(first.frames).toHaveLength(1);
    await eventually(() => expect(first.frames.map((f) => f.ref).filter(Boolean)).toEqual(["a", "b", "c"]));

    // The room refuses a second live socket for the id: the close code reaches the client.
    const thief = rawSocket(room, team, `agent=owner&v=${PROTOCOL_VERSION}`);
    expect(await thief.closed).toMatchObject({ code: CLOSE_CODES.AgentIdInUse.code, wasClean: true });
    // A bad connect URL gets the room's 4400.
    expect((await rawSocket(room, team, `agent=bad%20name&v=${PROTOCOL_VERSION}`).closed).code).toBe(
      CLOSE_CODES.BadRequest.code,
    );

    // A client's close reaches the room: the id is free again.
    first.ws.close(4000, "bye");
    expect(await first.closed).toMatchObject({ code: 4000, reason: "bye", wasClean: true });
    const next = rawSocket(room, team, `agent=owner&v=${PROTOCOL_VERSION}`);
    await eventually(() => expect(next.frames[0]?.type).toBe("welcome"));
    next.ws.close();
  });

  it("fails a socket to an unknown host or party like a refused connection (error, then 1006)", async () => {
    await using room = createTestRoom();
    const events: string[] = [];
    const ws = new room.WebSocket("ws://elsewhere.invalid/parties/main/acme?agent=a");
    ws.onerror = () => events.push("error");
    ws.onclose = (e) => events.push(`close ${(e as MemoryCloseEvent).code}`);
    await eventually(() => expect(events).toEqual(["error", "close 1006"]));
    const other = rawSocket(room, "acme", "agent=a").ws;
    const party = new room.WebSocket(`ws://${room.host}/parties/other/acme?agent=a`);
    const closed = new Promise<MemoryCloseEvent>((r) =>
      party.addEventListener("close", (e) => r(e as MemoryCloseEvent)),
    );
    expect((await closed).code).toBe(1006);
    other.close();
    expect(() => new room.WebSocket("not a url")).toThrow(DOMException);
  });

  it("crashes on kill(): sockets drop with 1006, memory goes, storage stays; restart() brings it back", async () => {
    await using room = createTestRoom();
    const team = room.team("crash");
    const writer = await room.agent("writer", { team });
    const { seq } = await writer.publish("deal.closed", { n: 1 });
    writer.state("deals").set("D1", { stage: "won" });
    await eventually(async () =>
      expect((await (await room.fetch(`/parties/main/${team}/state/deals`)).json()).D1).toBeDefined(),
    );
    const raw = rawSocket(room, team, `agent=raw&v=${PROTOCOL_VERSION}`);
    await eventually(() => expect(raw.frames[0]?.type).toBe("welcome"));

    await room.kill();
    expect(await raw.closed).toEqual({ code: 1006, reason: "", wasClean: false });
    await eventually(() => expect(writer.status).toBe("offline"));
    await expect(room.fetch(`/parties/main/${team}`)).rejects.toThrow(TypeError);
    expect(room.storage(team).keysOf("log/main").length).toBeGreaterThan(0);
    // While it is down, the agent keeps trying and stays offline.
    await sleep(300);
    expect(writer.status).toBe("offline");

    await room.restart();
    await writer.online(5000);
    expect((await writer.publish("deal.closed", { n: 2 })).seq).toBe(seq + 1);
    const reader = await room.agent("reader", { team });
    const deals = reader.state("deals");
    await deals.ready;
    expect(deals.get("D1")).toEqual({ stage: "won" });
    // The roster is memory: only who reconnected is in it.
    await eventually(() =>
      expect(
        reader
          .agents()
          .map((a) => a.agent)
          .sort(),
      ).toEqual(["reader", "writer"]),
    );
  });

  it("answers HTTP through room.fetch as PartyKit routes it, and refuses a relative path", async () => {
    await using room = createTestRoom();
    expect((await room.fetch("/parties/main/acme")).status).toBe(200);
    expect((await room.fetch("/parties/main/acme/nothing")).status).toBe(404);
    expect((await room.fetch("/somewhere/else")).status).toBe(404);
    await expect(room.fetch("parties/main/acme")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(() => room.storage("")).toThrow(TestKitError);
  });
});

describe.each(ROOMS)("the same on the %s", (_, start) => {
  let room: TestHost;
  beforeAll(async () => {
    room = await start();
  });
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });

  it("answers the HTTP views with the same statuses, types and bodies", async () => {
    const team = room.team("http");
    const a = await room.agent("a", { team });
    await a.publish("deal.created", { n: 1 });
    a.state("deals").set("D1", { stage: "open" });
    await eventually(async () =>
      expect((await (await room.fetch(`/parties/main/${team}/state/deals`)).json()).D1).toMatchObject({
        value: { stage: "open" },
        meta: { version: 1, updatedBy: "a" },
      }),
    );
    expect(await (await room.fetch(`/parties/main/${team}`)).json()).toMatchObject({ team, agents: [{ agent: "a" }] });
    expect(await (await room.fetch(`/parties/main/${team}/agents`)).json()).toMatchObject([
      { agent: "a", role: "agent" },
    ]);
    const metrics = await room.fetch(`/parties/main/${team}/metrics`);
    expect(metrics.headers.get("content-type")).toContain("text/plain");
    expect(await metrics.text()).toMatch(/^crosstalk_events_published_total\{stream="main"\} 1$/m);
    const stream = await room.fetch(`/parties/main/${team}/streams/main?from=1&limit=5`);
    expect(stream.headers.get("content-type")).toContain("application/x-ndjson");
    expect(
      (await stream.text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).seq),
    ).toEqual([1]);
    expect((await room.fetch(`/parties/main/${team}/streams/bad%20name`)).status).toBe(400);
    expect((await room.fetch(`/parties/main/${team}/nothing`)).status).toBe(404);
    expect((await room.fetch(`/parties/main/${team}`, { method: "POST" })).status).toBe(405);
  });

  it("cut() drops the socket and the agent reconnects; down() holds it off until up()", async () => {
    const team = room.team("faults");
    const net = room.cuttableSocket();
    const agent = await room.agent("flaky", { team, WebSocket: net.WebSocket, minReconnectDelayMs: 20 });
    const watcher = await room.agent("watcher", { team });
    const openedAt = net.openedAt;
    expect(openedAt).toBeGreaterThan(0);
    net.cut();
    await eventually(() => expect(net.openedAt).toBeGreaterThan(openedAt));
    await agent.online(10_000);

    net.down();
    await eventually(() => expect(watcher.agents().map((a) => a.agent)).toEqual(["watcher"]));
    await sleep(300);
    expect(agent.status).toBe("offline");
    net.up();
    await agent.online(10_000);
    expect((await agent.publish("back.online", {})).seq).toBe(1);
    expect(net.bytesSent).toBeGreaterThan(0);
    expect(net.bytesReceived).toBeGreaterThan(0);
  });

  it("dropOutgoing() loses matching frames while the socket stays up", async () => {
    const team = room.team("lossy");
    const net = room.cuttableSocket();
    const callee = await room.agent("callee", { team });
    callee.handle("ping", () => "pong");
    const caller = await room.agent("caller", { team, WebSocket: net.WebSocket });
    await eventually(() => expect(caller.agents().find((a) => a.agent === "callee")?.methods).toEqual(["ping"]));
    net.dropOutgoing((data) => typeof data === "string" && data.includes('"type":"rpc.call"'));
    await expect(caller.call("callee", "ping", {}, { timeoutMs: 300 })).rejects.toMatchObject({ code: "TIMEOUT" });
    expect(caller.status).toBe("online");
    net.dropOutgoing(null);
    expect(await caller.call("callee", "ping", {})).toBe("pong");
  });
});

describe("startRoom", () => {
  it("says plainly when partykit is not installed, and refuses a missing config or a bad --var", async () => {
    const empty = mkdtempSync(join(tmpdir(), "crosstalk-no-partykit-"));
    try {
      const error = await startRoom({ cwd: empty }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TestKitError);
      expect(error).toMatchObject({
        code: "PARTYKIT_NOT_FOUND",
        message: expect.stringContaining("npm install -D partykit"),
      });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    await expect(startRoom({ config: "no/such/partykit.json" })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(startRoom({ vars: { "NOT A NAME": "1" } })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("keeps every line the room logs, even one written together with workerd's stack note", async () => {
    // partykit dev at its default level drops such a chunk whole (seen in CI: a room's no-key line lost).
    await using room = await startRoom({ config: "test/fixtures/log-chunk/partykit.json" });
    await eventually(() => expect(room.output()).toContain("[log-chunk] a line of the room's"));
  });

  it.each(["partykit", "wrangler"] as const)(
    "heap() on %s: the room's JS heap after GC, which grows with what the room holds",
    async (host) => {
      await using room = await startRoom({ host });
      const agent = await room.agent("writer");
      const before = await room.heap();
      expect(before).toBeGreaterThan(1);
      expect(before).toBeLessThan(512);
      // 8 MB of distinct text in a state document the room keeps loaded.
      const ns = agent.state("big");
      await ns.ready;
      for (let i = 0; i < 16; i++) ns.set(`k${i}`, { text: `${i}:${"x".repeat(512 * 1024)}` });
      await eventually(async () => expect(await room.heap()).toBeGreaterThan(before + 6), { timeoutMs: 60_000 });
    },
    120_000,
  );
});

it("is never imported by the library or the room (the kit is Node-only and for tests)", () => {
  const ROOT = resolve(import.meta.dirname, "..");
  const offenders: string[] = [];
  for (const dir of ["client", "party", "protocol"]) {
    if (!existsSync(join(ROOT, dir))) continue;
    for (const file of readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })) {
      if (!file.endsWith(".ts") || file.endsWith(".test.ts")) continue;
      const source = readFileSync(join(ROOT, dir, file), "utf8");
      if (/from\s*["'](?:[./]*\/testing\/|crosstalk\/testing)/.test(source)) offenders.push(`${dir}/${file}`);
    }
  }
  expect(offenders).toEqual([]);
});

it("resolves crosstalk/testing to the compiled kit", () => {
  const script = `
    const kit = await import("crosstalk/testing");
    const room = kit.createTestRoom();
    const a = await (await import("crosstalk/node")).connect({ host: room.host, team: "t", agent: "a", role: "agent", WebSocket: room.WebSocket });
    const { seq } = await a.publish("x.y", {});
    await room[Symbol.asyncDispose]();
    await a.close();
    console.log(JSON.stringify({ exports: ["createTestRoom", "startRoom", "cuttableSocket", "eventually"].map((k) => typeof kit[k]), seq }));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: resolve(import.meta.dirname, ".."),
  });
  expect(JSON.parse(String(out))).toEqual({ exports: ["function", "function", "function", "function"], seq: 1 });
});
