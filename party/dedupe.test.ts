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

describe("ArchivedIds in bulk", () => {
  it("answers as a plain list of (hash, segment) would, through adds, whole segments and drops", () => {
    // The reference: every entry in insertion order; the oldest are dropped first.
    const entries: { h: number; segNo: number }[] = [];
    const ids = new ArchivedIds();
    const idOf = (seg: number, i: number) => `s${seg}-e${i}`;
    let next = 0;
    for (let seg = 0; seg < 40; seg++) {
      const count = seg % 3 === 0 ? 1024 : 200 + seg;
      if (seg % 2 === 0) {
        const hashes = Uint32Array.from({ length: count }, (_, i) => idHash(idOf(seg, i)));
        ids.addSegment(seg, hashes);
      } else {
        for (let i = 0; i < count; i++) ids.add(idOf(seg, i), seg);
      }
      for (let i = 0; i < count; i++) entries.push({ h: idHash(idOf(seg, i)), segNo: seg });
      if (seg % 5 === 4) {
        const n = 700 + seg * 13;
        ids.dropOldest(n);
        next += n;
      }
      expect(ids.size).toBe(entries.length - next);
    }
    const kept = entries.slice(next);
    const expected = (id: string) => [...new Set(kept.filter((e) => e.h === idHash(id)).map((e) => e.segNo))];
    for (let seg = 0; seg < 40; seg++) {
      for (const i of [0, 1, 150, 199, 1023]) {
        const id = idOf(seg, i);
        expect(ids.candidates(id)).toEqual(expected(id));
      }
    }
    for (let i = 0; i < 2000; i++) expect(ids.candidates(`fresh-${i}`)).toEqual(expected(`fresh-${i}`));
    ids.dropOldest(ids.size);
    expect(ids.size).toBe(0);
    expect(ids.candidates(idOf(39, 0))).toEqual([]);
  });
});
