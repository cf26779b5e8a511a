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

/** Index bits of a packed entry: `hash * INDEX_SPAN + index`, exact in a float64 (30 + 16 bits). */
const INDEX_SPAN = 65_536;
/** Fewest bits of the prefilter; it holds about 16 bits per hash (a few per cent false hits). */
const MIN_FILTER_BITS = 1024;

/**
 * The hashes of one archived segment (or a run of adds to one), packed with the position each
 * was added at and sorted, so a lookup is a binary search. Entries before `from` are forgotten.
 */
type Group = { segNo: number; packed: Float64Array; count: number; from: number; sorted: boolean };

/**
 * Hash → the archived segment(s) holding an id with that hash, oldest first (insertion order).
 * Kept in typed arrays (about 8 bytes a hash, outside the JS heap, made at their final size
 * when a segment comes whole), not a `Map` of 100,000 entries that rehashes as it grows: that
 * map and its discarded tables were most of what the dedupe window cost a loading room. A
 * small bit set of every hash answers most lookups of a fresh id without a search.
 */
export class ArchivedIds {
  /** Oldest first. */
  #groups: Group[] = [];
  #size = 0;
  #filter = new Uint32Array(MIN_FILTER_BITS / 32);
  /** Entries forgotten since the filter was built: it still has their bits. */
  #stale = 0;

  get size(): number {
    return this.#size;
  }

  add(id: string, segment: number): void {
    const h = idHash(id);
    let group = this.#groups.at(-1);
    if (!group || group.segNo !== segment || group.count === INDEX_SPAN) {
      group = { segNo: segment, packed: new Float64Array(16), count: 0, from: 0, sorted: true };
      this.#groups.push(group);
    }
    if (group.count === group.packed.length) {
      const grown = new Float64Array(Math.min(group.count * 2, INDEX_SPAN));
      grown.set(group.packed);
      group.packed = grown;
    }
    group.packed[group.count] = h * INDEX_SPAN + group.count;
    group.count++;
    group.sorted = false;
    this.#added(h);
  }

  /** {@link add} for every id of `segment`, by its {@link idHash} in `hashes`, in order: made at its size, at once. */
  addSegment(segment: number, hashes: ArrayLike<number>): void {
    for (let start = 0; start < hashes.length; start += INDEX_SPAN) {
      const count = Math.min(INDEX_SPAN, hashes.length - start);
      const packed = new Float64Array(count);
      for (let i = 0; i < count; i++) packed[i] = (hashes[start + i] as number) * INDEX_SPAN + i;
      packed.sort();
      this.#groups.push({ segNo: segment, packed, count, from: 0, sorted: true });
      for (let i = 0; i < count; i++) this.#added(hashes[start + i] as number);
    }
  }

  /** The segments that may hold `id` (none: it is not an archived id the stream remembers). */
  candidates(id: string): readonly number[] {
    const h = idHash(id);
    if (!hasBit(this.#filter, h)) return [];
    const found: number[] = [];
    for (const group of this.#groups) if (holds(group, h)) found.push(group.segNo);
    return found;
  }

  /** Forgets the `n` oldest hashes. */
  dropOldest(n: number): void {
    const groups = this.#groups;
    let gone = 0;
    while (n > 0 && gone < groups.length) {
      const group = groups[gone] as Group;
      const left = group.count - group.from;
      const dropped = Math.min(n, left);
      group.from += dropped;
      this.#size -= dropped;
      this.#stale += dropped;
      n -= dropped;
      if (dropped === left) gone++;
    }
    if (gone > 0) groups.splice(0, gone);
    if (this.#stale > Math.max(this.#size, MIN_FILTER_BITS)) this.#refilter();
  }

  #added(h: number): void {
    this.#size++;
    if ((this.#size + this.#stale) * 8 > this.#filter.length * 32) this.#refilter();
    else setBit(this.#filter, h);
  }

  /** Builds the filter again from the hashes kept, at about 16 bits a hash. */
  #refilter(): void {
    let bits = MIN_FILTER_BITS;
    while (bits < this.#size * 16) bits *= 2;
    const filter = new Uint32Array(bits / 32);
    for (const group of this.#groups) {
      for (let i = 0; i < group.count; i++) {
        const v = group.packed[i] as number;
        if (v % INDEX_SPAN >= group.from) setBit(filter, Math.floor(v / INDEX_SPAN));
      }
    }
    this.#filter = filter;
    this.#stale = 0;
  }
}

function setBit(filter: Uint32Array, h: number): void {
  const bit = h & (filter.length * 32 - 1);
  filter[bit >>> 5] = (filter[bit >>> 5] as number) | (1 << (bit & 31));
}

function hasBit(filter: Uint32Array, h: number): boolean {
  const bit = h & (filter.length * 32 - 1);
  return ((filter[bit >>> 5] as number) & (1 << (bit & 31))) !== 0;
}

/** Whether `group` still holds an entry of hash `h`. */
function holds(group: Group, h: number): boolean {
  if (!group.sorted) {
    group.packed.subarray(0, group.count).sort();
    group.sorted = true;
  }
  const { packed, count, from } = group;
  const first = h * INDEX_SPAN;
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((packed[mid] as number) < first) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < count && (packed[i] as number) < first + INDEX_SPAN; i++) {
    if ((packed[i] as number) - first >= from) return true;
  }
  return false;
}
