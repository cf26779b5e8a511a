/**
 * An agent's state writes made in one tick reach the room as one merged update (client/docs.ts),
 * without changing what anyone sees: frames still leave in the order they were made (a
 * conditional write right after plain writes is decided on them), and every write arrives.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

let room: TestRoom;
beforeAll(() => {
  room = createTestRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

it("sends a tick's writes as one update, ahead of a conditional write made after them", async () => {
  const team = room.team("batching");
  const link = room.cuttableSocket();
  let binaryFrames = 0;
  link.dropOutgoing((data) => {
    if (typeof data !== "string") binaryFrames++;
    return false;
  });
  const writer = await room.agent("writer", { team, WebSocket: link.WebSocket });
  const reader = await room.agent("reader", { team });
  const deals = writer.state("deals");
  await deals.ready;
  await reader.state("deals").ready;

  binaryFrames = 0;
  deals.set("K", { n: 0 });
  for (let i = 0; i < 200; i++) deals.update(`D${i % 20}`, { [`f${i % 7}`]: i });
  // Sent before the held writes would go at the end of the tick: they must go first, or the
  // room would not know version 1 of K yet.
  const conditional = deals.setIf("K", 1, { n: 1 });
  expect(binaryFrames).toBe(1);
  expect(await conditional).toEqual({ version: 2 });

  await eventually(() => expect(reader.state("deals").toJSON()).toEqual(deals.toJSON()));
  expect(reader.state("deals").get("K")).toEqual({ n: 1 });
  expect(Object.keys(reader.state("deals").toJSON())).toHaveLength(21);
  const d19: Record<string, number> = {};
  for (let i = 19; i < 200; i += 20) d19[`f${i % 7}`] = i;
  expect(reader.state("deals").get("D19")).toEqual(d19);
});
