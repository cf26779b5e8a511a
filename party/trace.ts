/**
 * Recent calls and messages, by correlation id, for `trace`. Events are already stored in
 * their streams; calls and messages are not, so the room keeps the last
 * {@link TRACE_CAPACITY} of them in memory (not across restarts — enough to inspect live
 * work without a storage write per call).
 */
import type { TraceItem } from "../protocol/index.ts";

export const TRACE_CAPACITY = 10_000;

export class TraceLog {
  readonly #ring: (TraceItem | undefined)[] = new Array(TRACE_CAPACITY);
  #next = 0;

  add(record: TraceItem): void {
    this.#ring[this.#next] = record;
    this.#next = (this.#next + 1) % TRACE_CAPACITY;
  }

  find(correlationId: string): TraceItem[] {
    return this.#ring.filter((r): r is TraceItem => r?.correlationId === correlationId);
  }
}
