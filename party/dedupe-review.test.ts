/** Review: `ArchivedIds` never misses a segment that still holds an id, whatever the mix of adds, whole segments and drops. */
import { describe, expect, it } from "vitest";
import { seededRandom } from "../test/harness.ts";
import { ArchivedIds, idHash } from "./dedupe.ts";

describe("review: ArchivedIds against a plain list", () => {
  it("candidates always include every remembered segment of an id", () => {
    const r = seededRandom(3);
    for (let round = 0; round < 8; round++) {
      const ids = new ArchivedIds();
      const ref: { id: string; seg: number }[] = [];
      const pool = Array.from({ length: 5 + Math.floor(r() * 3000) }, (_, i) => `id-${round}-${i}`);
      let seg = 0;
      for (let step = 0; step < 400; step++) {
        const x = r();
        if (x < 0.4) {
          const n = Math.floor(r() * 50);
          for (let i = 0; i < n; i++) {
            const id = pool[Math.floor(r() * pool.length)] as string;
            ids.add(id, seg);
            ref.push({ id, seg });
          }
          if (r() < 0.3) seg++;
        } else if (x < 0.6) {
          seg++;
          const list = Array.from(
            { length: Math.floor(r() * 1100) },
            () => pool[Math.floor(r() * pool.length)] as string,
          );
          ids.addSegment(seg, Uint32Array.from(list, idHash));
          for (const id of list) ref.push({ id, seg });
          seg++;
        } else if (x < 0.75) {
          const n = Math.floor(r() * 600);
          ids.dropOldest(n);
          ref.splice(0, n);
        } else {
          for (let k = 0; k < 20; k++) {
            const id = pool[Math.floor(r() * pool.length)] as string;
            const want = new Set(ref.filter((e) => e.id === id).map((e) => e.seg));
            const got = new Set(ids.candidates(id));
            for (const s of want) expect(got.has(s)).toBe(true);
          }
        }
        expect(ids.size).toBe(ref.length);
      }
    }
  });
});
