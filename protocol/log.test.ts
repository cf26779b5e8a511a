/**
 * The segmented layout of `log/<stream>` documents: appends across segment boundaries,
 * lookups, head and tail, and that a synced copy reads the same.
 */
import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { appendEvents } from "../party/log.ts";
import { LOG_SEGMENT_SIZE, type StoredEvent } from "./index.ts";
import { eventAt, logHead, logSegments, logTail } from "./log.ts";

const event = (seq: number): StoredEvent => ({
  id: `e-${seq}`,
  type: "deal.updated",
  data: { seq, note: `event ${seq}` },
  stream: "main",
  seq,
  ts: 1_700_000_000_000 + seq,
  source: "agent-a",
});
const range = (from: number, to: number): StoredEvent[] =>
  Array.from({ length: to - from + 1 }, (_, i) => event(from + i));

/** Appends in batches of the given sizes, each batch one transaction, continuing from seq 1. */
function build(batches: number[]): Y.Doc {
  const doc = new Y.Doc();
  const segments = logSegments(doc);
  let next = 1;
  for (const size of batches) {
    const events = range(next, next + size - 1);
    doc.transact(() => appendEvents(segments, events));
    next += size;
  }
  return doc;
}

const S = LOG_SEGMENT_SIZE;

describe("log documents", () => {
  it("is empty at first", () => {
    const segments = logSegments(new Y.Doc());
    expect(logHead(segments)).toBe(0);
    expect(logTail(segments)).toBe(1);
    expect(eventAt(segments, 1)).toBeUndefined();
  });

  it("places events in segments of LOG_SEGMENT_SIZE, across a batch that straddles boundaries", () => {
    // 10 singles, a batch ending exactly at the first boundary, a batch straddling the second
    // boundary, and a batch spanning more than a whole segment.
    const batches = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, S - 10, S - 5, 10, 2 * S + 3];
    const total = batches.reduce((a, b) => a + b, 0);
    const doc = build(batches);
    const segments = logSegments(doc);

    expect(logHead(segments)).toBe(total);
    expect(logTail(segments)).toBe(1);
    const segmentCount = Math.ceil(total / S);
    expect([...segments.keys()].sort((a, b) => Number(a) - Number(b))).toEqual(
      Array.from({ length: segmentCount }, (_, i) => String(i)),
    );
    for (let i = 0; i < segmentCount - 1; i++) expect(segments.get(String(i))?.length).toBe(S);
    expect(segments.get(String(segmentCount - 1))?.length).toBe(total - (segmentCount - 1) * S);

    for (let seq = 1; seq <= total; seq++) expect(eventAt(segments, seq)?.seq).toBe(seq);
    for (const seq of [1, S - 1, S, S + 1, 2 * S, 2 * S + 1, total]) expect(eventAt(segments, seq)).toEqual(event(seq));
    expect(eventAt(segments, total + 1)).toBeUndefined();
    expect(eventAt(segments, total + S)).toBeUndefined();
  });

  it("handles a first batch larger than several segments", () => {
    const total = 3 * S + 1;
    const segments = logSegments(build([total]));
    expect(logHead(segments)).toBe(total);
    expect(segments.size).toBe(4);
    expect(eventAt(segments, 3 * S)?.seq).toBe(3 * S);
    expect(eventAt(segments, 3 * S + 1)?.seq).toBe(3 * S + 1);
  });

  it("reports the tail after the oldest segments are dropped", () => {
    const doc = build([3 * S + 7]);
    const segments = logSegments(doc);
    doc.transact(() => {
      segments.delete("0");
      segments.delete("1");
    });
    expect(logTail(segments)).toBe(2 * S + 1);
    expect(logHead(segments)).toBe(3 * S + 7);
    expect(eventAt(segments, S)).toBeUndefined();
    expect(eventAt(segments, 2 * S + 1)?.seq).toBe(2 * S + 1);
    // Appending continues in the last segment.
    doc.transact(() => appendEvents(segments, range(3 * S + 8, 4 * S + 2)));
    expect(logHead(segments)).toBe(4 * S + 2);
    expect(eventAt(segments, 4 * S + 1)?.seq).toBe(4 * S + 1);
  });

  it("reads identically in a copy synced with Y.encodeStateAsUpdate, also incrementally", () => {
    const source = build([5, S - 5, S + 3]);
    const copy = new Y.Doc();
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(source));

    const read = (doc: Y.Doc) => {
      const segments = logSegments(doc);
      const head = logHead(segments);
      const tail = logTail(segments);
      const events: (StoredEvent | undefined)[] = [];
      for (let seq = tail; seq <= head; seq++) events.push(eventAt(segments, seq));
      return { head, tail, events };
    };
    expect(read(copy)).toEqual(read(source));
    expect(read(copy).head).toBe(2 * S + 3);
    expect(copy.getMap("segments").toJSON()).toEqual(source.getMap("segments").toJSON());

    // Further appends, sent as a diff against the copy's state vector.
    const before = Y.encodeStateVector(copy);
    source.transact(() => appendEvents(logSegments(source), range(2 * S + 4, 3 * S + 10)));
    Y.applyUpdate(copy, Y.encodeStateAsUpdate(source, before));
    expect(read(copy)).toEqual(read(source));
    expect(read(copy).head).toBe(3 * S + 10);
  });
});
