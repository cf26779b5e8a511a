/**
 * Retention's age and bytes rules and the audit stream's bound, over the in-process room (the
 * real `TeamRoom`, a clock the test moves): fast checks of what `test/retention.test.ts` and
 * `test/audit.test.ts` prove end to end in a real room.
 */
import { afterAll, expect, it } from "vitest";
import type { StoredEvent, Team } from "../client/index.ts";
import { defaultPolicy } from "../party/default-policy.ts";
import type { RetentionReport } from "../party/retention.ts";
import { AUDIT_STREAM, type RetentionRule } from "../protocol/index.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

const HOUR = 3_600_000;
let clock = Date.UTC(2026, 0, 1);
const rooms: TestRoom[] = [];
afterAll(async () => {
  for (const r of rooms) await r[Symbol.asyncDispose]();
});

function newRoom(options: Parameters<typeof createTestRoom>[0] = {}): TestRoom {
  const room = createTestRoom({
    streams: { window: 1024 },
    retention: { intervalMs: HOUR * 1000 },
    now: () => clock,
    ...options,
  });
  rooms.push(room);
  return room;
}

async function publish(team: Team, n: number): Promise<void> {
  for (let i = 0; i < n; i += 512)
    await team.publishBatch(
      Array.from({ length: Math.min(512, n - i) }, (_, j) => ({ type: "reading.taken", data: { v: i + j } })),
      { stream: "telemetry" },
    );
}

async function pass(room: TestRoom, team: string): Promise<RetentionReport> {
  const res = await room.fetch(`/parties/main/${team}/retention/telemetry`, { method: "POST" });
  expect(res.status).toBe(200);
  return (await res.json()) as RetentionReport;
}

async function setup(room: TestRoom, name: string, rule: RetentionRule): Promise<{ team: string; pub: Team }> {
  const team = room.team(name);
  const ops = await room.agent("ops", { team, role: "admin" });
  await ops.setPolicy({ ...defaultPolicy, retention: { telemetry: rule } });
  return { team, pub: await room.agent("pub", { team }) };
}

it("age: archived segments whose newest event is older than maxAgeMs go, newer ones stay", async () => {
  const room = newRoom();
  const { team, pub } = await setup(room, "age", { maxAgeMs: HOUR });
  await publish(pub, 2048);
  clock += 2 * HOUR;
  await publish(pub, 2048);
  // Archived: segments 0..2 (seqs 1..3072); 0 and 1 are two hours old, 2 is not.
  const report = await pass(room, team);
  expect(report).toMatchObject({ firstSeq: 2049, removed: { age: 2048, count: 0, bytes: 0 } });
  expect(report.removedBytes).toBe(0); // The archive was not read: age needs only its index.
  const kept: StoredEvent[] = [];
  for await (const e of pub.history({ stream: "telemetry", from: 2049 })) kept.push(e);
  expect(kept.map((e) => e.seq)).toEqual(Array.from({ length: 2048 }, (_, i) => 2049 + i));

  // An agent allowed only some types reads through a room-filtered feed: told the same, typed.
  const ops = await room.agent("ops-2", { team, role: "admin" });
  await ops.setPolicy({
    roles: {
      ...defaultPolicy.roles,
      "*": { allow: ["stream.publish"], deny: [] },
      viewer: { allow: ["stream.subscribe:telemetry/reading.*"], deny: [] },
    },
    retention: { telemetry: { maxAgeMs: HOUR } },
  });
  const viewer = await room.agent("viewer", { team, role: "viewer" });
  const errors: unknown[] = [];
  viewer.on("error", (error) => void errors.push(error));
  viewer.subscribe("reading.*", () => {}, { stream: "telemetry", from: "start" });
  await eventually(() =>
    expect(errors).toEqual([expect.objectContaining({ code: "EVENTS_REMOVED", details: { firstSeq: 2049 } })]),
  );
  const seen: number[] = [];
  viewer.subscribe("reading.*", (e) => void seen.push(e.seq), {
    stream: "telemetry",
    from: "start",
    skipRemoved: true,
  });
  await eventually(() => expect(seen).toHaveLength(2048));
  expect(seen[0]).toBe(2049);
});

it("bytes: the oldest segments go until the archive fits maxBytes", async () => {
  const room = newRoom();
  const { team, pub } = await setup(room, "bytes", { maxBytes: 1 });
  await publish(pub, 4096);
  // One segment's size, then a budget of one and a half.
  const one = (await pass(room, team)).removedBytes / 3;
  expect(one).toBeGreaterThan(0);
  const room2 = newRoom();
  const second = await setup(room2, "bytes2", { maxBytes: Math.floor(one * 1.5) });
  await publish(second.pub, 4096);
  expect(await pass(room2, second.team)).toMatchObject({ firstSeq: 2049, removed: { bytes: 2048 } });
});

it("audit: at most maxKeys distinct aggregates per window; the rest are counted in audit.dropped", async () => {
  const room = newRoom({ audit: { maxKeys: 2, flushMs: 500 } });
  const team = room.team("audit-bound");
  const ops = await room.agent("ops", { team, role: "admin" });
  const agents = await Promise.all(["a1", "a2", "a3", "a4", "a5"].map((name) => room.agent(name, { team })));
  const refused = agents.map((a) => a.publish("x", {}, { stream: AUDIT_STREAM }).catch((e: unknown) => e));
  for (const r of await Promise.all(refused)) expect(r).toMatchObject({ code: "FORBIDDEN" });
  await eventually(async () => {
    const events: StoredEvent[] = [];
    for await (const e of ops.history({ stream: AUDIT_STREAM })) events.push(e);
    const counted = events.reduce(
      (n, e) =>
        n + (e.type === "audit.frame.refused" || e.type === "audit.dropped" ? (e.data as { count: number }).count : 0),
      0,
    );
    expect(counted).toBe(5);
    expect(events.some((e) => e.type === "audit.dropped")).toBe(true);
  });
});
