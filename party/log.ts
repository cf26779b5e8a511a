/**
 * The room's writer of `log/<stream>` documents (the layout and the readers are in
 * `protocol/log.ts`). Room-only: clients never write a log, so this stays out of the
 * client bundle.
 */
import * as Y from "yjs";
import {
  compactEvent,
  LOG_SEGMENT_SIZE,
  type LogEntry,
  type LogSegments,
  type StoredEvent,
  segmentOf,
} from "../protocol/index.ts";

/**
 * Appends events whose `seq` continues the log without a gap, in their compact form
 * (`compactEvent`). Call inside a transaction to make a batch one update.
 */
export function appendEvents(segments: LogSegments, events: StoredEvent[]): void {
  let i = 0;
  while (i < events.length) {
    const first = events[i] as StoredEvent;
    const key = String(segmentOf(first.seq));
    let segment = segments.get(key);
    if (!segment) {
      segment = new Y.Array<LogEntry>();
      segments.set(key, segment);
    }
    const room = LOG_SEGMENT_SIZE - segment.length;
    const slice = events.slice(i, i + room).map(compactEvent);
    segment.push(slice);
    i += slice.length;
  }
}
