/**
 * Offline-first agents against a real `partykit dev`, through the kit's fault proxy: an
 * agent process (test/fixtures/offline-agent.ts, file storage) works with the room
 * unreachable, is SIGKILLed, restarted on the same directory, and once the link heals every
 * event it printed (= durable locally) is in the room exactly once, in its order, and each
 * message is handled once — killed while offline, killed during the flush, and with its log
 * truncated at a random offset. And an agent whose outbox waited more than 24 h of room
 * clock still lands exactly once.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as encoding from "lib0/encoding";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { connect, MemoryStorage, openFileStorage, type StorageOp, type Team } from "../client/node.ts";
import {
  CrosstalkError,
  decodeDocFrame,
  encodeDocFrame,
  logDoc,
  logSegments,
  logTail,
  PROTOCOL_VERSION,
} from "../protocol/index.ts";
import { eventually, type FaultProxy, type RoomServer, startFaultProxy, startRoom } from "./harness.ts";
import { rawSocket } from "./raw-socket.ts";

const AGENT = new URL("./fixtures/offline-agent.ts", import.meta.url).pathname;
const CALLEE = new URL("./fixtures/idempotent-callee.ts", import.meta.url).pathname;
const dirs: string[] = [];
const freshDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "crosstalk-offline-"));
  dirs.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

type Run = { child: ChildProcess; lines: string[]; exited: Promise<number | null> };

function runAgent(options: Record<string, unknown>, script = AGENT): Run {
  const child = spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let rest = "";
  let errors = "";
  child.stdout?.on("data", (d: Buffer) => {
    const parts = (rest + d.toString()).split("\n");
    rest = parts.pop() ?? "";
    lines.push(...parts);
  });
  child.stderr?.on("data", (d: Buffer) => {
    errors += d.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      if (code !== 0 && code !== null) console.error(errors);
      resolve(code);
    }),
  );
  return { child, lines, exited };
}

const kill = async (run: Run) => {
  run.child.kill("SIGKILL");
  await run.exited;
};
const printed = (runs: Run[], kind: "E" | "S") =>
  runs.flatMap((r) => r.lines.filter((l) => l.startsWith(`${kind} `)).map((l) => l.slice(2)));

let room: RoomServer;
let proxy: FaultProxy;
beforeAll(async () => {
  room = await startRoom();
  proxy = await startFaultProxy({ port: room.port });
}, 60_000);
afterAll(async () => {
  await proxy?.close();
  await room?.[Symbol.asyncDispose]();
});

/** Everything the room has for `team`'s main stream, in seq order. */
async function roomIds(reader: Team): Promise<string[]> {
  const ids: string[] = [];
  for await (const event of reader.history()) ids.push(event.id);
  return ids;
}

/** Every printed id is in the room once, in printed order; nothing is in the room twice. */
function expectExactlyOnceInOrder(inRoom: string[], printedIds: string[]): void {
  expect(new Set(inRoom).size).toBe(inRoom.length);
  const position = new Map(inRoom.map((id, i) => [id, i]));
  const missing = printedIds.filter((id) => !position.has(id));
  expect(missing).toEqual([]);
  const positions = printedIds.map((id) => position.get(id) as number);
  expect(positions.every((p, i) => i === 0 || p > (positions[i - 1] as number))).toBe(true);
}

async function scenario(kind: "offline" | "flush" | "truncate"): Promise<void> {
  const team = room.team(`offline-${kind}`);
  const dir = freshDir();
  const handled = new Map<string, number>();
  const sink = await room.agent("sink", { team });
  sink.handle("note", (_input, ctx) => {
    const id = ctx.callId as string;
    handled.set(id, (handled.get(id) ?? 0) + 1);
  });
  const reader = await room.agent("reader", { team });
  const token = await room.token("producer", "agent", { team });
  const base = { host: proxy.host, team, token, dir };
  proxy.mode = "refuse";

  const first = runAgent({ ...base, events: 10_000, sends: 100, run: "first" });
  if (kind === "offline") {
    const at = 1 + Math.floor(Math.random() * 9_000);
    await eventually(() => expect(first.lines.length).toBeGreaterThanOrEqual(at), { timeoutMs: 120_000 });
    await kill(first);
  } else {
    await eventually(() => expect(first.lines).toContain("DONE"), { timeoutMs: 120_000 });
    if (kind === "flush") {
      proxy.mode = "pass";
      // Killed once part of the outbox has landed (or, rarely, all of it).
      const some = 1 + Math.floor(Math.random() * 5_000);
      await eventually(async () => expect((await roomIds(reader)).length).toBeGreaterThanOrEqual(some), {
        timeoutMs: 60_000,
        intervalMs: 20,
      });
      await kill(first);
      proxy.mode = "refuse";
    } else {
      await kill(first);
      const log = join(dir, "log");
      truncateSync(log, Math.floor(Math.random() * statSync(log).size));
    }
  }

  // What the directory holds now: a truncated log keeps a prefix of the outbox, nothing else.
  const stored = openFileStorage(dir);
  const survivors = (await stored.scan("out/")).flatMap(([, value]) => {
    const entry = JSON.parse(new TextDecoder().decode(value)) as {
      frame: { type: string; events?: { id: string }[]; id?: string };
    };
    return entry.frame.type === "publish" ? (entry.frame.events ?? []).map((e) => e.id) : [];
  });
  await stored.close();

  const second = runAgent({ ...base, events: 300, sends: 0, run: "second" });
  await eventually(() => expect(second.lines).toContain("DONE"), { timeoutMs: 60_000 });
  proxy.mode = "pass";
  await eventually(() => expect(second.lines).toContain("SYNCED"), { timeoutMs: 60_000 });
  expect(await second.exited).toBe(0);

  const inRoom = await roomIds(reader);
  const firstEvents = printed([first], "E");
  const secondEvents = printed([second], "E");
  expect(secondEvents).toHaveLength(300);
  if (kind === "truncate") {
    // Recovery stopped at the first bad frame: the room has exactly the survivors, then the second run.
    expect(firstEvents.slice(0, survivors.length)).toEqual(survivors);
    expect(inRoom).toEqual([...survivors, ...secondEvents]);
  } else {
    expectExactlyOnceInOrder(inRoom, [...firstEvents, ...secondEvents]);
    // Anything else in the room is the first run's: durable but killed before it printed.
    expect(inRoom.length).toBeLessThanOrEqual(10_000 + 300);
  }
  // Every printed message is handled exactly once; none twice.
  const sends = printed([first], "S");
  if (kind !== "truncate") {
    expect(sends.length).toBeGreaterThan(0);
    await eventually(() => expect(sends.filter((id) => handled.get(id) !== 1)).toEqual([]), { timeoutMs: 30_000 });
  }
  await sleepBriefly();
  expect([...handled.values()].filter((n) => n !== 1)).toEqual([]);
}

/** The first seq still in the stream's live log document, read over a raw socket. */
async function liveTail(host: RoomServer, team: string): Promise<number> {
  const token = await host.token("peek", "agent", { team });
  const raw = await rawSocket(
    host,
    `ws://${host.host}/parties/main/${team}?agent=peek&role=agent&v=${PROTOCOL_VERSION}&token=${token}`,
  );
  try {
    await eventually(() => expect(raw.frames.some((f) => f.type === "welcome")).toBe(true));
    const doc = new Y.Doc();
    raw.send(encodeDocFrame(logDoc("main"), (e) => syncProtocol.writeSyncStep1(e, doc)));
    await eventually(() => expect(raw.binary.length).toBeGreaterThan(0));
    for (const bytes of raw.binary) {
      const decoded = decodeDocFrame(bytes);
      if (decoded.ok) syncProtocol.readSyncMessage(decoded.frame.decoder, encoding.createEncoder(), doc, null);
    }
    return logTail(logSegments(doc));
  } finally {
    raw.close();
  }
}

const sleepBriefly = () => new Promise((r) => setTimeout(r, 500));

describe("an agent killed with SIGKILL and restarted on the same directory lands everything exactly once", () => {
  it("killed at a random point while offline", () => scenario("offline"), 240_000);
  it("killed while flushing its outbox", () => scenario("flush"), 240_000);
  it("with its log truncated at a random offset", () => scenario("truncate"), 240_000);
});

describe("an agent offline for more than 24 h of room clock", () => {
  it("still lands its outbox exactly once (the room dedupes by outbox number, not the 24 h id window)", async () => {
    const clocked = await startRoom({ vars: { CROSSTALK_LOG_WINDOW: "100" } });
    const cut = await startFaultProxy({ port: clocked.port });
    try {
      const team = clocked.team("away");
      // Tokens outlive the jump of the room's clock (admission checks expiry by it).
      const token = await clocked.token("producer", "agent", { team, ttl: "7d" });
      const agentOf = async (id: string) =>
        clocked.agent(id, { team, token: await clocked.token(id, "agent", { team, ttl: "7d" }) });
      const handled = new Map<string, number>();
      const sink = await agentOf("sink");
      sink.handle("note", (_input, ctx) => {
        handled.set(ctx.callId as string, (handled.get(ctx.callId as string) ?? 0) + 1);
      });
      const dir = freshDir();
      const open = async (at: string) => {
        const storage = openFileStorage(at);
        const agent = await connect({
          host: cut.host,
          team,
          agent: "producer",
          role: "agent",
          token,
          persist: storage,
          waitForOnline: false,
          maxReconnectDelayMs: 300,
        });
        return { storage, agent };
      };
      // Offline: 300 events and 5 messages wait in the outbox.
      cut.mode = "refuse";
      const a = await open(dir);
      const published = await Promise.all(Array.from({ length: 300 }, (_, i) => a.agent.publish("work", { i })));
      expect(published.every((r) => r.pending === true && r.seq === 0)).toBe(true);
      const sends = await Promise.all(Array.from({ length: 5 }, (_, k) => a.agent.send("sink", "note", { k })));
      expect(sends.every((r) => r.pending === true)).toBe(true);
      expect(a.agent.pending().count).toBeGreaterThan(0);
      await a.agent.flushed();
      await a.agent.close();
      await a.storage.close();
      // The image a crash would leave if the room applied the outbox but the agent never heard back.
      const image = freshDir();
      cpSync(dir, image, { recursive: true });

      cut.mode = "pass";
      const b = await open(dir);
      await b.agent.synced({ timeoutMs: 30_000 });
      expect(b.agent.pending()).toEqual({ count: 0, bytes: 0, oldestAt: null });
      await b.agent.close();
      await b.storage.close();
      // Another agent pushes the stream on, so the first events leave the live window for the archive.
      const filler = await agentOf("filler");
      await filler.publishBatch(Array.from({ length: 900 }, (_, i) => ({ type: "fill", data: { i } })));
      // Archived (durably) before the room goes: the log document's live window no longer starts at 1.
      await eventually(async () => expect(await liveTail(clocked, team)).toBeGreaterThan(300), { timeoutMs: 30_000 });
      await filler.close();

      // 25 hours later, by the room's clock.
      await clocked.restart({ vars: { CROSSTALK_TEST_CLOCK_SKEW_MS: String(25 * 3_600_000) } });
      const c = await open(image);
      expect(c.agent.instance).toBe(b.agent.instance);
      expect(c.agent.pending().count).toBeGreaterThan(0);
      await c.agent.synced({ timeoutMs: 60_000 });
      const reader = await agentOf("reader");
      const ids: string[] = [];
      for await (const e of reader.history()) if (e.type === "work") ids.push(e.id);
      expect(ids).toEqual(published.map((r) => r.id));
      await sleepBriefly();
      expect(sends.map((s) => handled.get(s.id))).toEqual([1, 1, 1, 1, 1]);
      // The id window alone would not have caught it: an old id without an outbox number is appended again.
      const [again] = await reader.publishBatch([{ type: "work", data: {}, options: { id: published[0]?.id } }]);
      expect(again?.duplicate).toBe(false);
      await c.agent.close();
      await c.storage.close();
    } finally {
      await cut.close();
      await clocked[Symbol.asyncDispose]();
    }
  }, 240_000);
});

describe("offline semantics of one agent (real room, link cut by the proxy)", () => {
  it("keeps state, publishes, pending counts and its instance across a restart offline, and syncs them on reconnect", async () => {
    const team = room.team("semantics");
    const token = await room.token("worker", "agent", { team });
    const dir = freshDir();
    const open = async () => {
      const storage = openFileStorage(dir);
      const agent = await connect({
        host: proxy.host,
        team,
        agent: "worker",
        role: "agent",
        token,
        persist: storage,
        waitForOnline: false,
        maxReconnectDelayMs: 300,
      });
      return { storage, agent };
    };
    proxy.mode = "refuse";
    const a = await open();
    const counts: number[] = [];
    a.agent.on("pending", (p) => counts.push(p.count));
    a.agent.state("tasks").set("t1", { title: "offline write" });
    const first = await a.agent.publish("task.created", { id: "t1" });
    expect(first).toMatchObject({ pending: true, seq: 0 });
    await a.agent.flushed();
    expect(a.agent.pending()).toMatchObject({ count: 1 });
    expect(a.agent.pending().bytes).toBeGreaterThan(0);
    expect(counts.at(-1)).toBe(1);
    // A call made offline fails at once, unless it asks to be queued.
    await expect(a.agent.call("nobody", "work", {})).rejects.toMatchObject({ code: "OFFLINE" });
    const instance = a.agent.instance;
    await a.agent.close();
    await a.storage.close();

    // Restarted, still offline: the last known state, the outbox and the instance are back.
    const b = await open();
    expect(b.agent.instance).toBe(instance);
    expect(b.agent.state("tasks").get("t1")).toMatchObject({ title: "offline write" });
    expect(b.agent.pending().count).toBe(1);
    const callee = await room.agent("callee", { team });
    callee.handle("work", (input) => ({ echoed: input }));
    const queued = b.agent.call("callee", "work", { n: 1 }, { queue: true, timeoutMs: 30_000 });
    const second = await b.agent.publish("task.created", { id: "t2" });
    expect(second.pending).toBe(true);

    proxy.mode = "pass";
    await expect(queued).resolves.toEqual({ echoed: { n: 1 } });
    await expect(second.acked).resolves.toMatchObject({ seq: 2, duplicate: false });
    await b.agent.synced({ timeoutMs: 30_000 });
    expect(b.agent.pending()).toEqual({ count: 0, bytes: 0, oldestAt: null });
    const reader = await room.agent("reader", { team });
    const tasks = reader.state("tasks");
    await eventually(() => expect(tasks.get("t1")).toMatchObject({ title: "offline write" }));
    const events: string[] = [];
    for await (const e of reader.history()) events.push((e.data as { id: string }).id);
    expect(events).toEqual(["t1", "t2"]);
    // Online, publish resolves with the room's answer as before.
    expect(await b.agent.publish("task.created", { id: "t3" })).toMatchObject({ seq: 3, duplicate: false });
    // A stream it follows can be read back offline, also after a restart: its window is kept locally.
    const followed: number[] = [];
    await b.agent.subscribe(">", (e) => void followed.push(e.seq), { from: "start" });
    await eventually(() => expect(followed).toEqual([1, 2, 3]));
    await b.agent.flushed();
    proxy.mode = "refuse";
    proxy.cut("rst");
    await eventually(() => expect(b.agent.status).toBe("offline"));
    const offlineIds = async (agent: Team) => {
      const ids: string[] = [];
      for await (const e of agent.history()) ids.push((e.data as { id: string }).id);
      return ids;
    };
    expect(await offlineIds(b.agent)).toEqual(["t1", "t2", "t3"]);
    await b.agent.close();
    await b.storage.close();
    const c = await open();
    expect(await offlineIds(c.agent)).toEqual(["t1", "t2", "t3"]);
    await c.agent.close();
    await c.storage.close();
    proxy.mode = "pass";
  }, 120_000);

  it("counts every pending event, message and queued call, not outbox entries, and drains to 0 online", async () => {
    const team = room.team("count");
    proxy.mode = "refuse";
    const agent = await connect({
      host: proxy.host,
      team,
      agent: "counter",
      role: "agent",
      token: await room.token("counter", "agent", { team }),
      persist: new MemoryStorage(),
      waitForOnline: false,
      maxReconnectDelayMs: 300,
    });
    // Fired together, the 1,000 publishes share one outbox entry: each still counts.
    const published = Array.from({ length: 1_000 }, (_, i) => agent.publish("tick", { i }));
    expect(agent.pending().count).toBe(1_000);
    const sent = [agent.send("someone", "note", { a: 1 }), agent.send("someone", "note", { a: 2 })];
    const callee = await room.agent("callee", { team });
    callee.handle("work", (input) => input);
    const call = agent.call("callee", "work", { n: 1 }, { queue: true, timeoutMs: 60_000 });
    await Promise.all([...published, ...sent]);
    await agent.flushed();
    expect(agent.pending().count).toBe(1_003);
    expect(agent.pending().bytes).toBeGreaterThan(0);

    proxy.mode = "pass";
    await expect(call).resolves.toEqual({ n: 1 });
    await agent.synced({ timeoutMs: 60_000 });
    expect(agent.pending()).toEqual({ count: 0, bytes: 0, oldestAt: null });
    const reader = await room.agent("reader", { team });
    let n = 0;
    for await (const _ of reader.history()) n++;
    expect(n).toBe(1_000);
    await agent.close();
  }, 60_000);

  it("flushes one-at-a-time publishes as merged frames, exactly once across a cut mid-flush", async () => {
    const team = room.team("merged");
    proxy.mode = "refuse";
    const agent = await connect({
      host: proxy.host,
      team,
      agent: "merger",
      role: "agent",
      token: await room.token("merger", "agent", { team }),
      persist: openFileStorage(freshDir()),
      waitForOnline: false,
      maxReconnectDelayMs: 300,
    });
    const ids: string[] = [];
    // One at a time: 3,000 outbox entries, flushed as frames of up to 1,000 events.
    for (let i = 0; i < 3_000; i++) ids.push((await agent.publish("tick", { i }, { id: `m-${i}` })).id);
    await agent.flushed();
    const reader = await room.agent("reader", { team });
    proxy.mode = "pass";
    // Cut once part of the flush has landed (rarely all of it): merged frames whose ack was
    // lost go again as they were, and the room's outbox numbers make them duplicates.
    await eventually(async () => expect((await roomIds(reader)).length).toBeGreaterThan(0), { intervalMs: 5 });
    proxy.cut("rst");
    await agent.synced({ timeoutMs: 60_000 });
    expect(agent.pending().count).toBe(0);
    expect(await roomIds(reader)).toEqual(ids);
    await agent.close();
  }, 120_000);

  it("fails a write its storage cannot take with STORAGE_FULL instead of hanging", async () => {
    const team = room.team("full");
    proxy.mode = "refuse";
    const storage = new QuotaStorage(4_000);
    const agent = await connect({
      host: proxy.host,
      team,
      agent: "writer",
      role: "agent",
      token: await room.token("writer", "agent", { team }),
      persist: storage,
      waitForOnline: false,
    });
    await expect(agent.publish("big", { blob: "x".repeat(10_000) })).rejects.toMatchObject({ code: "STORAGE_FULL" });
    await expect(agent.send("someone", "note", { blob: "x".repeat(10_000) })).rejects.toMatchObject({
      code: "STORAGE_FULL",
    });
    expect(agent.pending().count).toBe(0);
    // Small writes still fit.
    expect(await agent.publish("small", { ok: true })).toMatchObject({ pending: true });
    await agent.close();
    proxy.mode = "pass";
  }, 60_000);
});

/** An agent storage with a byte quota, as browsers have (IndexedDB's QuotaExceededError). */
class QuotaStorage extends MemoryStorage {
  #bytes = 0;
  constructor(private readonly quota: number) {
    super();
  }
  override async batch(ops: StorageOp[]): Promise<void> {
    const added = ops.reduce((n, op) => n + (op.type === "put" ? op.value.byteLength + op.key.length : 0), 0);
    if (this.#bytes + added > this.quota) throw new CrosstalkError("STORAGE_FULL", "quota exceeded");
    this.#bytes += added;
    return super.batch(ops);
  }
}

describe("an instance id given again with fresh storage (a redeployed worker named by its host)", () => {
  it("lands its new publishes and sends instead of the room dropping them as duplicates", async () => {
    const team = room.team("reinstance");
    const sink = await room.agent("sink", { team });
    const got: number[] = [];
    sink.handle("note", (input) => void got.push((input as { k: number }).k));
    const open = async () =>
      connect({
        host: room.host,
        team,
        agent: "worker",
        role: "agent",
        token: await room.token("worker", "agent", { team }),
        persist: new MemoryStorage(),
        instance: "worker-host-1",
      });
    const first = await open();
    for (let i = 0; i < 3; i++) await first.publish("work", { run: 1, i });
    await first.send("sink", "note", { k: 1 });
    await first.close();

    const second = await open();
    const ack = await second.publish("work", { run: 2 });
    expect(ack.duplicate).toBe(false);
    expect(ack.seq).toBe(4);
    await second.send("sink", "note", { k: 2 });
    await eventually(() => expect(got).toEqual([1, 2]));
    await second.close();
    await sink.close();
  });
});

describe("a callee restarted on its storage remembers the idempotent calls it answered", () => {
  it("answers a repeated key with the stored result after SIGKILL, without running the handler again", async () => {
    const team = room.team("idem-restart");
    const dir = freshDir();
    const runs = join(dir, "runs");
    const go = join(dir, "go");
    writeFileSync(runs, "");
    const calleeProxy = await startFaultProxy({ port: room.port });
    const caller = await room.agent("caller", { team });
    const base = { host: calleeProxy.host, team, token: await room.token("callee", "agent", { team }), runs, go };
    try {
      const first = runAgent({ ...base, dir: join(dir, "store"), hold: true }, CALLEE);
      await eventually(() => expect(first.lines).toContain("STATUS online"), { timeoutMs: 60_000 });
      // Online is not serving yet: its method list reaches the room in the next frame.
      const serving = () =>
        caller
          .agents()
          .find((a) => a.agent === "callee")
          ?.methods.includes("work");
      await eventually(() => expect(serving()).toBe(true), { timeoutMs: 30_000 });
      const call = caller.call("callee", "work", { n: 7 }, { idempotencyKey: "job-7", timeoutMs: 60_000 });
      await eventually(() => expect(first.lines).toContain("RAN"), { timeoutMs: 30_000 });
      // Its answer cannot reach the room: the call is in doubt there, the outcome only on the callee's disk.
      calleeProxy.mode = "refuse";
      calleeProxy.cut("rst");
      await eventually(() =>
        expect(first.lines.some((l) => l.startsWith("STATUS") && l !== "STATUS online")).toBe(true),
      );
      writeFileSync(go, "");
      await eventually(() => expect(first.lines).toContain("STORED"), { timeoutMs: 30_000 });
      await kill(first);
      expect(readFileSync(runs, "utf8")).toBe("run\n");

      // Restarted on the same directory: the room sends the call again, and it is answered from storage.
      calleeProxy.mode = "pass";
      const second = runAgent({ ...base, dir: join(dir, "store"), hold: false }, CALLEE);
      const answer = (await call) as { input: unknown; answer: string };
      expect(answer.input).toEqual({ n: 7 });
      // The caller repeats the key: the same result.
      await expect(
        caller.call("callee", "work", { n: 7 }, { idempotencyKey: "job-7", timeoutMs: 30_000 }),
      ).resolves.toEqual(answer);
      expect(readFileSync(runs, "utf8")).toBe("run\n");
      // A new key runs the handler once the restarted callee serves again (its in-doubt call came
      // back on admission, before its method list did).
      await eventually(() => expect(serving()).toBe(true), { timeoutMs: 30_000 });
      await expect(caller.call("callee", "work", { n: 8 }, { idempotencyKey: "job-8" })).resolves.toMatchObject({
        input: { n: 8 },
      });
      expect(readFileSync(runs, "utf8")).toBe("run\nrun\n");
      await kill(second);
    } finally {
      await calleeProxy.close();
    }
  }, 120_000);
});
