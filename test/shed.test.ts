/**
 * A stream paced as the fan-out benchmark paces it (a few events per frame), long enough that
 * its log document archives a segment many times and sheds what died (party/storage.ts
 * `shedDead`: dead folds become GC stubs instead of the whole window being compacted), with
 * SIGKILLs in between that land right after an acknowledged commit, i.e. while its fold and
 * shed may be under way. After each restart, every event 1..N is read exactly once, in order,
 * by a newcomer (from the archive and the live window) and by a subscriber that stayed.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

// A small window: a segment (1,024 events) is archived, and its folds die, every 1,024 events.
const WINDOW = 1024;
let room: RoomServer;
beforeAll(async () => {
  room = await startRoom({ vars: { CROSSTALK_LOG_WINDOW: String(WINDOW) } });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const all = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

it("reads every event of a long paced stream exactly once, in order, across SIGKILLs while it folds and sheds", {
  timeout: 240_000,
}, async () => {
  const team = room.team("shed");
  const writer = await room.agent("writer", { team });
  const reader = await room.agent("reader", { team });
  const seen: number[] = [];
  await reader.subscribe("tick", (e) => void seen.push(e.seq), { from: "start" }).ready;

  let published = 0;
  /** `rounds` frames of 8 concurrent publishes (one frame, one record), each acknowledged. */
  const publish = async (rounds: number) => {
    for (let r = 0; r < rounds; r++) {
      const acks = await Promise.all(Array.from({ length: 8 }, () => writer.publish("tick", { i: published++ })));
      expect(acks.map((a) => a.seq)).toEqual(acks.map((_, k) => published - 7 + k));
    }
  };
  const restart = async () => {
    await room.kill("SIGKILL");
    await room.restart();
    await eventually(() => expect([writer.status, reader.status]).toEqual(["online", "online"]), {
      timeoutMs: 20_000,
    });
  };
  const newcomerReads = async (name: string) => {
    const newcomer = await room.agent(name, { team });
    const replay: { seq: number; i: number }[] = [];
    await newcomer.subscribe("tick", (e) => void replay.push({ seq: e.seq, i: (e.data as { i: number }).i }), {
      from: "start",
    }).ready;
    await eventually(() => expect(replay.map((e) => e.seq)).toEqual(all(published)), { timeoutMs: 30_000 });
    expect(replay.every((e) => e.i === e.seq - 1)).toBe(true);
    await newcomer.close();
  };

  // ~6 archived segments before the first kill, as many again by a second instance (its own
  // Yjs client id: what the first wrote dies and is shed under the second), then more.
  await publish(800);
  await restart();
  await newcomerReads("newcomer-1");
  await publish(800);
  await restart();
  await publish(200);
  await newcomerReads("newcomer-2");
  await eventually(() => expect(seen).toEqual(all(published)), { timeoutMs: 30_000 });
});
