/**
 * Outbox marks, bounded: the highest durable-outbox entry the room applied per sender
 * instance (`protocol/frames.ts` `outbox`), for one channel (a stream, or direct messages).
 * Every client instance with a durable outbox adds one, and instances come and go (a process
 * restarted without its storage, a browser profile wiped), so each agent keeps only its
 * `max` most recently used instances, in memory and in storage. An evicted instance's resends
 * are still deduped by event or message id within the room's id window (24 h); only "however
 * long ago" is lost for it.
 *
 * An agent's marks are listed from storage on its first use (one `list` per agent and
 * channel), oldest instance first: default instance ids are UUIDv7, so their order is when
 * they were made.
 */
import type { KvStorage } from "./storage.ts";

/** Instances per agent and channel whose marks the room keeps. */
export const MAX_MARKS_PER_AGENT = 64;

export type MarksOptions<M> = {
  storage: KvStorage;
  /** The storage key prefix of `agent`'s marks on this channel; the instance follows it. */
  prefix: (agent: string) => string;
  /** A mark at entry `n` (0: nothing applied yet). */
  make: (n: number) => M;
  max?: number;
  /** For log lines. */
  team?: string;
};

export class OutboxMarks<M extends { n: number }> {
  /** agent → instance → mark; each inner map's order is recency, least recently used first. */
  readonly #agents = new Map<string, Promise<Map<string, M>>>();
  readonly #max: number;

  constructor(private readonly options: MarksOptions<M>) {
    this.#max = options.max ?? MAX_MARKS_PER_AGENT;
  }

  /** `agent`'s mark for `instance`, made (at 0) if it has none; now its most recent. */
  async get(agent: string, instance: string): Promise<M> {
    const marks = await this.#load(agent);
    let mark = marks.get(instance);
    if (mark) marks.delete(instance);
    else mark = this.options.make(0);
    marks.set(instance, mark);
    this.#evict(agent, marks);
    return mark;
  }

  #load(agent: string): Promise<Map<string, M>> {
    let loading = this.#agents.get(agent);
    if (!loading) {
      const prefix = this.options.prefix(agent);
      loading = this.options.storage.list<number>({ prefix }).then((stored) => {
        const marks = new Map<string, M>();
        for (const key of [...stored.keys()].sort())
          marks.set(key.slice(prefix.length), this.options.make(stored.get(key) ?? 0));
        this.#evict(agent, marks);
        return marks;
      });
      loading.catch(() => this.#agents.delete(agent));
      this.#agents.set(agent, loading);
    }
    return loading;
  }

  #evict(agent: string, marks: Map<string, M>): void {
    if (marks.size <= this.#max) return;
    const gone: string[] = [];
    for (const instance of marks.keys()) {
      if (marks.size - gone.length <= this.#max) break;
      gone.push(instance);
    }
    for (const instance of gone) marks.delete(instance);
    const prefix = this.options.prefix(agent);
    // Storage deletes at most 128 keys per call.
    for (let i = 0; i < gone.length; i += 128) {
      this.options.storage
        .delete(gone.slice(i, i + 128).map((instance) => prefix + instance))
        .catch((error: unknown) =>
          console.error(`[crosstalk ${this.options.team ?? ""}] outbox marks not deleted`, error),
        );
    }
  }
}
