/**
 * Recent calls and messages, by correlation id, for `trace`. Events are already stored in
 * their streams; calls and messages are not, so the room keeps the last
 * {@link TRACE_CAPACITY} of them in memory (not across restarts — enough to inspect live
 * work without a storage write per call).
 */
import type { TraceNode } from "../client/trace.ts";

export const TRACE_CAPACITY = 10_000;

type Record = Omit<TraceNode, "children">;

export class TraceLog {
  readonly #ring: (Record | undefined)[] = new Array(TRACE_CAPACITY);
  #next = 0;

  add(record: Record): void {
    this.#ring[this.#next] = record;
    this.#next = (this.#next + 1) % TRACE_CAPACITY;
  }

  find(correlationId: string): Record[] {
    return this.#ring.filter((r): r is Record => r?.correlationId === correlationId);
  }
}
