/**
 * Many deadlines on one host timer. On workerd a `setTimeout` per call (and its
 * `clearTimeout` when the answer comes first) cost about as much CPU as the relay's whole
 * exchange: the room's calls each have a deadline, almost none of which is ever reached.
 * Here each deadline is an entry in a min-heap and only the earliest is armed on the host.
 *
 * The host timer is armed at most {@link MAX_ARMED_MS} ahead and left armed when the last
 * deadline goes: a room answering one call at a time (each call's deadline added, then deleted
 * before the next) would otherwise arm and clear a host timer per call, as costly as one
 * timer per call. A timer that finds nothing due re-arms only for what is left, so an idle
 * room holds no timer past that bound (a pending timer keeps a hibernating room awake).
 *
 * Times are the host's real clock (`Date.now`), like `setTimeout`'s: an injected room clock
 * that stands still must not stop deadlines. A deadline fires no earlier than `setTimeout`
 * with the same delay would have, in order of due time.
 *
 * Room-internal; used by `rpc.ts`.
 */

/** `n` orders equal due times by when they were added, as the host's timer lists do. */
type Entry<K> = { key: K; at: number; ms: number; n: number; live: boolean };

/** How far ahead the host timer is armed at most: the longest an idle room keeps it. */
export const MAX_ARMED_MS = 1000;

const before = <K>(a: Entry<K>, b: Entry<K>): boolean => a.at < b.at || (a.at === b.at && a.n < b.n);

export class Deadlines<K> {
  readonly #heap: Entry<K>[] = [];
  readonly #byKey = new Map<K, Entry<K>>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** When the armed host timer is due. */
  #armedAt = Number.POSITIVE_INFINITY;
  #added = 0;

  /** `fire(key, ms)` runs once `key`'s deadline (`ms` after it was added) passes, unless deleted first. */
  constructor(private readonly fire: (key: K, ms: number) => void) {}

  /** Schedules `fire(key)` in `ms` milliseconds (replacing a deadline `key` had). */
  add(key: K, ms: number): void {
    this.delete(key);
    const entry: Entry<K> = { key, at: Date.now() + ms, ms, n: ++this.#added, live: true };
    this.#byKey.set(key, entry);
    this.#push(entry);
    if (entry.at < this.#armedAt) this.#arm();
  }

  /** Cancels `key`'s deadline. Its heap entry is dropped lazily, and the heap rebuilt when mostly dead. */
  delete(key: K): void {
    const entry = this.#byKey.get(key);
    if (!entry) return;
    entry.live = false;
    this.#byKey.delete(key);
    // The host timer stays armed (at most `MAX_ARMED_MS` ahead): the next deadline, likely
    // added before it is due, needs no host timer of its own.
    if (this.#byKey.size === 0) {
      this.#heap.length = 0;
    } else if (this.#heap.length > 64 && this.#heap.length > 4 * this.#byKey.size) {
      this.#heap.length = 0;
      for (const live of this.#byKey.values()) this.#push(live);
    }
  }

  get size(): number {
    return this.#byKey.size;
  }

  #arm(): void {
    this.#disarm();
    const first = this.#heap[0];
    if (!first) return;
    const now = Date.now();
    this.#armedAt = Math.min(first.at, now + MAX_ARMED_MS);
    this.#timer = setTimeout(() => this.#due(), Math.max(0, this.#armedAt - now));
  }

  #disarm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#armedAt = Number.POSITIVE_INFINITY;
  }

  #due(): void {
    this.#timer = null;
    this.#armedAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    for (let first = this.#heap[0]; first && (!first.live || first.at <= now); first = this.#heap[0]) {
      this.#pop();
      if (!first.live) continue;
      first.live = false;
      this.#byKey.delete(first.key);
      try {
        this.fire(first.key, first.ms);
      } catch (error) {
        // One failed deadline must not stop the others.
        console.error("[crosstalk] a deadline's handler failed", error);
      }
    }
    // `fire` may have added deadlines (and armed for one of them): arm for the earliest left.
    this.#arm();
  }

  #push(entry: Entry<K>): void {
    const heap = this.#heap;
    let i = heap.push(entry) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as Entry<K>;
      if (!before(entry, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop() as Entry<K>;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const child = r < heap.length && before(heap[r] as Entry<K>, heap[l] as Entry<K>) ? r : l;
      if (!before(heap[child] as Entry<K>, last)) break;
      heap[i] = heap[child] as Entry<K>;
      i = child;
    }
    heap[i] = last;
  }
}
