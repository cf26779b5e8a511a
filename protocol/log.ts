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
 */
import type * as Y from "yjs";
import { LOG_SEGMENT_SIZE } from "./limits.ts";
import type { StoredEvent } from "./schemas.ts";

export type LogSegments = Y.Map<Y.Array<StoredEvent>>;

export const logSegments = (doc: Y.Doc): LogSegments => doc.getMap("segments");

/** The segment (a key of the root map, in decimal) that holds event `seq`. */
export const segmentOf = (seq: number): number => Math.floor((seq - 1) / LOG_SEGMENT_SIZE);

/** The event with sequence number `seq`, if the document holds it. */
export function eventAt(segments: LogSegments, seq: number): StoredEvent | undefined {
  const segment = segments.get(String(segmentOf(seq)));
  return segment?.get((seq - 1) % LOG_SEGMENT_SIZE);
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
