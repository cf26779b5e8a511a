import { describe, expect, it } from "vitest";
import { ArchivedIds, idHash } from "./dedupe.ts";

/** Two different ids with the same 30-bit hash (a birthday search finds one in ~2^15 tries). */
function collision(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const id = `evt-${i}`;
    const other = seen.get(idHash(id));
    if (other !== undefined) return [other, id];
    seen.set(idHash(id), id);
  }
}

describe("ArchivedIds", () => {
  it("hashes to small integers and names every segment that may hold an id, collisions included", () => {
    expect(idHash("a")).toBeLessThan(2 ** 30);
    expect(idHash("a")).toBeGreaterThanOrEqual(0);
    const ids = new ArchivedIds();
    const [a, b] = collision();
    ids.add(a, 3);
    ids.add(b, 7);
    ids.add("other", 9);
    expect(ids.size).toBe(3);
    expect(ids.candidates(a)).toEqual([3, 7]);
    expect(ids.candidates(b)).toEqual([3, 7]);
    expect(ids.candidates("other")).toEqual([9]);
    expect(ids.candidates("never-added")).toEqual([]);
  });

  it("forgets the oldest first", () => {
    const ids = new ArchivedIds();
    for (let i = 0; i < 100; i++) ids.add(`e-${i}`, Math.floor(i / 10));
    ids.dropOldest(30);
    expect(ids.size).toBe(70);
    expect(ids.candidates("e-29")).toEqual([]);
    expect(ids.candidates("e-30")).toEqual([3]);
    expect(ids.candidates("e-99")).toEqual([9]);
  });
});
