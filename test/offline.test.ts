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
import { cpSync, mkdtempSync, rmSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as encoding from "lib0/encoding";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { connect, openFileStorage, type Team } from "../client/node.ts";
import { decodeDocFrame, encodeDocFrame, logDoc, logSegments, logTail } from "../protocol/index.ts";
import { eventually, type FaultProxy, type RoomServer, startFaultProxy, startRoom } from "./harness.ts";
import { rawSocket } from "./raw-socket.ts";

const AGENT = new URL("./fixtures/offline-agent.ts", import.meta.url).pathname;
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

function runAgent(options: Record<string, unknown>): Run {
  const child = spawn(process.execPath, ["--import", "tsx", AGENT, JSON.stringify(options)], {
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
  const raw = await rawSocket(host, `ws://${host.host}/parties/main/${team}?agent=peek&role=agent&v=1&token=${token}`);
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
