/**
 * Durable consumers' positions kept in memory have a count budget: past it the least recently
 * used go, and each one read again comes from storage unchanged (positions never rewind).
 */
import { expect, it } from "vitest";
import { Consumers } from "./consumers.ts";
import { MemoryKv } from "./memory-storage.ts";
import { TeamRoom } from "./room.ts";

it("positions past the budget are forgotten in memory and read back from storage, never rewound", async () => {
  const reads: string[] = [];
  const storage = new (class extends MemoryKv {
    override get<T>(key: string): Promise<T | undefined> {
      reads.push(key);
      return super.get<T>(key);
    }
  })();
  const room = new TeamRoom({ team: "acme", storage });
  const { metrics, presence, hub, traces, alarms } = room;
  const ctx = { storage, now: Date.now, metrics, presence, hub, traces, alarms };
  const consumers = new Consumers(ctx, room.streams, 2);
  const settle = () => new Promise((r) => setTimeout(r, 10));
  for (const [i, name] of ["a", "b", "c", "d"].entries()) consumers.ack("main", name, 10 + i);
  await settle();
  // Each read is a use: the cache never holds more than two, so "a" and "b" come from storage.
  reads.length = 0;
  expect(await consumers.position("main", "d")).toBe(13);
  expect(reads).toEqual([]);
  expect(await consumers.position("main", "a")).toBe(10);
  expect(await consumers.position("main", "b")).toBe(11);
  expect(await consumers.position("main", "c")).toBe(12);
  expect(reads.length).toBe(3);
  // A stale ack after a position was evicted and read back does not rewind it.
  await settle();
  expect(await consumers.position("main", "a")).toBe(10);
  consumers.ack("main", "a", 5);
  consumers.ack("main", "b", 20);
  await settle();
  expect(await consumers.position("main", "a")).toBe(10);
  expect(await consumers.position("main", "b")).toBe(20);
  // A fresh instance (a restart) reads the same positions.
  const again = new Consumers(ctx, room.streams, 2);
  expect(await Promise.all(["a", "b", "c", "d"].map((n) => again.position("main", n)))).toEqual([10, 20, 12, 13]);
  expect((await consumers.list("main")).consumers.map((c) => [c.name, c.acked])).toEqual([
    ["a", 10],
    ["b", 20],
    ["c", 12],
    ["d", 13],
  ]);
});
