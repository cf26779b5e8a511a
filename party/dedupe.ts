/**
 * The dedupe memory of a stream's archived events, in about 20 bytes an id instead of the id
 * itself. A stream remembers up to 100,000 recent event ids (`StreamOptions.dedupeMaxIds`) so a
 * re-published event is acknowledged, not appended twice; most of them lie in archived
 * segments, whose index records (`arcidx|…`, `streams.ts`) hold the ids anyway. So in memory
 * an archived id is only a 30-bit hash (a small integer, stored unboxed) mapped to its segment:
 * a publish whose id hashes to one is checked against that segment's index in storage
 * (`Streams.publish`), which for a fresh id happens about once in ten thousand.
 */

/** A 30-bit FNV-1a hash of `id`: small enough to stay a V8 small integer. */
export function idHash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h & 0x3fffffff;
}

/** Hash → the archived segment(s) holding an id with that hash, oldest first (insertion order). */
export class ArchivedIds {
  readonly #segments = new Map<number, number | number[]>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(id: string, segment: number): void {
    this.addHash(idHash(id), segment);
  }

  /** {@link add} for an id whose {@link idHash} is `h`. */
  addHash(h: number, segment: number): void {
    const known = this.#segments.get(h);
    if (known === undefined) this.#segments.set(h, segment);
    else if (Array.isArray(known)) known.push(segment);
    else this.#segments.set(h, [known, segment]);
    this.#size++;
  }

  /** The segments that may hold `id` (none: it is not an archived id the stream remembers). */
  candidates(id: string): readonly number[] {
    const known = this.#segments.get(idHash(id));
    return known === undefined ? [] : Array.isArray(known) ? known : [known];
  }

  /** Forgets the `n` oldest hashes. */
  dropOldest(n: number): void {
    for (const [h, known] of this.#segments) {
      if (n <= 0) return;
      const count = Array.isArray(known) ? known.length : 1;
      this.#segments.delete(h);
      this.#size -= count;
      n -= count;
    }
  }
}
