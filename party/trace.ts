/**
 * `trace.get`: everything the room knows of one piece of work. Events are already stored in
 * their streams; calls and messages are not, so the room keeps the last
 * {@link TRACE_CAPACITY} of them in memory (not across restarts — enough to inspect live
 * work without a storage write per call).
 */
import { eventNode, type TraceItem } from "../protocol/index.ts";
import type { RoomModule } from "./handlers.ts";
import type { Streams } from "./streams.ts";

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

/**
 * The events (searched in every stream's history, archive included, or in `only`) and the
 * recent calls and messages of one correlation id. A full scan: fine for an operator's
 * question, not for a hot path (an index by correlation id is the next step).
 */
export async function traceItems(
  { traces, streams }: { traces: TraceLog; streams: Streams },
  correlationId: string,
  only?: string[],
): Promise<TraceItem[]> {
  const nodes: TraceItem[] = [...traces.find(correlationId)];
  for (const name of only ?? (await streams.names())) {
    for await (const e of streams.scan(name, 1)) if (e.correlationId === correlationId) nodes.push(eventNode(e));
  }
  return nodes;
}

export const traceModule = (sources: { traces: TraceLog; streams: Streams }): RoomModule<"trace.get"> => ({
  frames: {
    "trace.get": async (_session, frame) => ({
      reply: { nodes: await traceItems(sources, frame.correlationId, frame.streams) },
    }),
  },
});
