/**
 * `trace.get`: everything the room knows of one piece of work. Events are already stored in
 * their streams; calls and messages are not, so the room keeps the last
 * {@link TRACE_CAPACITY} of them in memory (not across restarts — enough to inspect live
 * work without a storage write per call).
 */
import { eventNode, type TraceItem, targetResource } from "../protocol/index.ts";
import type { RoomModule } from "./handlers.ts";
import { canReachStream, canReadEvent, isOperator, type Principal } from "./policy.ts";
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
 * recent calls and messages of one correlation id, as `who` may see them: only events of
 * types it may read (streams it may not read are not searched, so their names never
 * appear), and only the calls and messages it took part in or could have made itself
 * (`rpc.call` / `inbox.send` of that target and method) — all of them for an operator
 * (`policy.admin`). A full scan: fine for an operator's question, not for a hot path (an
 * index by correlation id is the next step).
 */
export async function traceItems(
  { traces, streams }: { traces: TraceLog; streams: Streams },
  query: { correlationId: string; only?: string[]; who: Principal },
): Promise<TraceItem[]> {
  const { correlationId, who } = query;
  const nodes: TraceItem[] = traces.find(correlationId).filter((item) => mayTrace(who, item));
  const names = query.only ?? (await streams.names()).filter((name) => canReachStream(who, name));
  for (const name of names) {
    for await (const e of streams.scan(name, 1)) {
      if (e.correlationId === correlationId && canReadEvent(who, e)) nodes.push(eventNode(e));
    }
  }
  return nodes;
}

/** May `who` see this recorded call or message? */
function mayTrace(who: Principal, item: TraceItem): boolean {
  if (!who || isOperator(who)) return who !== null;
  const { from, to, method } = item.detail;
  const recipients = (Array.isArray(to) ? to : [to]).filter((r): r is string => typeof r === "string");
  if (from === who.agent || recipients.includes(who.agent)) return true;
  const action = item.kind === "call" ? "rpc.call" : "inbox.send";
  return recipients.some((r) => who.grants?.permits(action, targetResource(r, String(method))) ?? false);
}

export const traceModule = (sources: { traces: TraceLog; streams: Streams }): RoomModule<"trace.get"> => ({
  frames: {
    "trace.get": async (session, frame) => ({
      reply: {
        nodes: await traceItems(sources, {
          correlationId: frame.correlationId,
          ...(frame.streams ? { only: frame.streams } : {}),
          who: session,
        }),
      },
    }),
  },
});
