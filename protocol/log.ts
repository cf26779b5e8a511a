/**
 * The layout of a stream's log document (`log/<stream>`) and how to read it, shared by the
 * room and clients. Only the room writes these documents: the writer, `appendEvents`, lives in
 * `party/log.ts` so that it does not ship to browsers.
 *
 * The root map `segments` holds one Y.Array per {@link LOG_SEGMENT_SIZE} events, keyed by
 * the segment number in decimal: event `seq` lives in segment `floor((seq-1)/SIZE)` at index
 * `(seq-1) % SIZE`. Appends touch only the last segment, so their cost does not grow with
 * the log (a flat Y.Array gets slower per push as it grows), and a reader finds any event in
 * O(1). Events are plain JSON values in the arrays: immutable once written.
 *
 * Each value is a {@link LogEntry}: rooms write the compact form ({@link compactEvent}), which
 * leaves out what the reader knows already (the key names, `seq`: the position; the
 * correlation id when the event starts its own piece of work; the trace id, derived from the
 * correlation id), so a subscriber catching up receives a fraction of the bytes. Logs written
 * before it hold the {@link StoredEvent} itself, and still read (`test/log-golden.test.ts`).
 */
import type * as Y from "yjs";
import { LOG_SEGMENT_SIZE } from "./limits.ts";
import type { StoredEvent } from "./schemas.ts";
import { traceparentFor } from "./trace.ts";

/**
 * An event as rooms write it now: `[id, type, data, ts, source, stream, extra?]`. `extra`
 * holds the optional fields under short names, only those present: `v`, `k` (key), `c`
 * (causation id), `r` (correlation id; absent: the event's own id; null: none), `s` (the
 * span id of a traceparent derived from the correlation id) or `t` (any other traceparent).
 */
export type CompactEvent = [
  id: string,
  type: string,
  data: StoredEvent["data"],
  ts: number,
  source: string,
  stream: string,
  extra?: CompactExtra,
];
type CompactExtra = { v?: number; k?: string; c?: string; r?: string | null; s?: string; t?: string };

/** A value of a log segment: the compact form, or a whole event as older rooms wrote it. */
export type LogEntry = CompactEvent | StoredEvent;

export type LogSegments = Y.Map<Y.Array<LogEntry>>;

/** The compact form of `event` ({@link CompactEvent}); {@link storedEvent} gives it back exactly. */
export function compactEvent(event: StoredEvent): CompactEvent {
  const extra: CompactExtra = {};
  let any = false;
  if (event.v !== undefined) {
    extra.v = event.v;
    any = true;
  }
  if (event.key !== undefined) {
    extra.k = event.key;
    any = true;
  }
  if (event.causationId !== undefined) {
    extra.c = event.causationId;
    any = true;
  }
  const correlation = event.correlationId;
  if (correlation !== event.id) {
    extra.r = correlation ?? null;
    any = true;
  }
  const tp = event.traceparent;
  if (tp !== undefined) {
    const span = tp.slice(36, 52);
    if (correlation !== undefined && tp === traceparentFor(correlation, span)) extra.s = span;
    else extra.t = tp;
    any = true;
  }
  const entry: CompactEvent = [event.id, event.type, event.data, event.ts, event.source, event.stream];
  if (any) entry.push(extra);
  return entry;
}

/** The event an entry at `seq` holds, whichever form it was written in. */
export function storedEvent(entry: LogEntry, seq: number): StoredEvent {
  if (!Array.isArray(entry)) return entry;
  const [id, type, data, ts, source, stream, extra] = entry;
  // Filled in the order a room builds an event (input fields, then what it stamps).
  const event = { id, type, data } as StoredEvent;
  if (extra?.v !== undefined) event.v = extra.v;
  if (extra?.k !== undefined) event.key = extra.k;
  if (extra?.c !== undefined) event.causationId = extra.c;
  const correlation = extra?.r === undefined ? id : (extra.r ?? undefined);
  if (correlation !== undefined) event.correlationId = correlation;
  if (extra?.s !== undefined && correlation !== undefined) event.traceparent = traceparentFor(correlation, extra.s);
  else if (extra?.t !== undefined) event.traceparent = extra.t;
  event.stream = stream;
  event.seq = seq;
  event.ts = ts;
  event.source = source;
  return event;
}

export const logSegments = (doc: Y.Doc): LogSegments => doc.getMap("segments");

/** The segment (a key of the root map, in decimal) that holds event `seq`. */
export const segmentOf = (seq: number): number => Math.floor((seq - 1) / LOG_SEGMENT_SIZE);

/** The event with sequence number `seq`, if the document holds it. */
/** The id and time of a log entry, without building the whole event ({@link storedEvent}). */
export const entryIdTs = (entry: LogEntry): { id: string; ts: number } =>
  Array.isArray(entry) ? { id: entry[0], ts: entry[3] } : { id: entry.id, ts: entry.ts };

export function eventAt(segments: LogSegments, seq: number): StoredEvent | undefined {
  const segment = segments.get(String(segmentOf(seq)));
  const entry = segment?.get((seq - 1) % LOG_SEGMENT_SIZE);
  return entry === undefined ? undefined : storedEvent(entry, seq);
}

/** The highest sequence number in the document (0 when empty). */
export function logHead(segments: LogSegments): number {
  let last = -1;
  for (const key of segments.keys()) last = Math.max(last, Number(key));
  if (last < 0) return 0;
  return last * LOG_SEGMENT_SIZE + (segments.get(String(last))?.length ?? 0);
}

/** The lowest sequence number the document still holds (head + 1 when empty). */
export function logTail(segments: LogSegments): number {
  let first = Number.POSITIVE_INFINITY;
  for (const key of segments.keys()) first = Math.min(first, Number(key));
  return Number.isFinite(first) ? first * LOG_SEGMENT_SIZE + 1 : logHead(segments) + 1;
}
