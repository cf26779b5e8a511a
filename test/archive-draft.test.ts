/**
 * On a real `partykit dev`: a stream whose segments are archived from drafts made a few events
 * per append (`party/streams.ts` `#draftArchive`), from bursts that outrun the drafting, and
 * after a SIGKILL that lost a half-made draft. A newcomer then reads every event 1..N exactly
 * once, in order, with its payload, from the archive and the live window; a re-publish of an
 * archived event's id is answered as a duplicate with its seq (the archive index).
 * `party/archive-draft.test.ts` checks the archive records byte for byte.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

// A small window: a segment (1,024 events) is archived every 1,024 events.
const WINDOW = 1024;
let room: RoomServer;
beforeAll(async () => {
  room = await startRoom({ vars: { CROSSTALK_LOG_WINDOW: String(WINDOW) } });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

it("reads every event exactly once, in order, from archives drafted ahead, burst or not, across a SIGKILL mid-draft", {
  timeout: 240_000,
}, async () => {
  const team = room.team("drafts");
  const writer = await room.agent("writer", { team });
  const ids: string[] = [];
  let n = 0;
  const singles = async (count: number) => {
    for (let i = 0; i < count; i++) {
      const ack = await writer.publish("tick", { n: n++ });
      ids[ack.seq] = ack.id;
    }
  };
  const burst = async (count: number) => {
    const acks = await Promise.all(Array.from({ length: count }, () => writer.publish("tick", { n: n++ })));
    for (const ack of acks) ids[ack.seq] = ack.id;
  };

  await singles(2100); // segment 0 archived from a whole draft
  await burst(1500); // segment 1: its draft outrun, finished by the archive
  await singles(1300); // segment 2's draft half made...
  await room.kill("SIGKILL"); // ...and lost
  await room.restart();
  await eventually(() => expect(writer.status).toBe("online"), { timeoutMs: 20_000 });
  await singles(1400);

  const newcomer = await room.agent("newcomer", { team });
  const read: { seq: number; n: number; id: string }[] = [];
  await newcomer.subscribe("tick", (e) => void read.push({ seq: e.seq, n: (e.data as { n: number }).n, id: e.id }), {
    from: "start",
  }).ready;
  await eventually(() => expect(read.length).toBe(n), { timeoutMs: 60_000 });
  expect(read.map((e) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  expect(read.every((e) => e.n === e.seq - 1 && e.id === ids[e.seq])).toBe(true);

  const again = await writer.publish("tick", { n: -1 }, { id: ids[1500] as string });
  expect(again).toMatchObject({ seq: 1500, duplicate: true });
  await newcomer.close();
  await writer.close();
});
