/**
 * A stream long enough that its log document folds its records several times (party/storage.ts
 * `compactTail`: a log every 32 KiB of records, one per publish frame here; a compaction after
 * 4,096 records before folds existed), then a SIGKILL and a restart: the reloaded log replays
 * every event exactly once, in order. test/shed.test.ts goes on to logs that archive and shed.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

it("replays every event of a folded stream log exactly once, in order, after a restart", {
  timeout: 180_000,
}, async () => {
  const team = room.team("fold");
  const writer = await room.agent("writer", { team });
  const reader = await room.agent("reader", { team });
  const seen: number[] = [];
  await reader.subscribe("tick", (e) => void seen.push(e.seq), { from: "start" }).ready;

  // One at a time: each publish is its own frame and its own record of the log document.
  const total = 4_500;
  for (let i = 0; i < total; i++) {
    const ack = await writer.publish("tick", { i });
    expect(ack.seq).toBe(i + 1);
  }
  const all = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
  await eventually(() => expect(seen).toEqual(all(total)), { timeoutMs: 30_000 });

  await room.kill("SIGKILL");
  await room.restart();
  await eventually(() => expect([writer.status, reader.status]).toEqual(["online", "online"]), { timeoutMs: 20_000 });
  expect((await writer.publish("tick", { i: total })).seq).toBe(total + 1);

  const newcomer = await room.agent("newcomer", { team });
  const replay: { seq: number; i: number }[] = [];
  await newcomer.subscribe("tick", (e) => void replay.push({ seq: e.seq, i: (e.data as { i: number }).i }), {
    from: "start",
  }).ready;
  await eventually(() => expect(replay.map((e) => e.seq)).toEqual(all(total + 1)), { timeoutMs: 30_000 });
  expect(replay.every((e) => e.i === e.seq - 1)).toBe(true);
  await eventually(() => expect(seen).toEqual(all(total + 1)));
});
