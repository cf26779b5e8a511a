/**
 * Golden log documents: a `log/<stream>` document as an older room wrote it must still read,
 * event for event, with today's readers — stored logs outlive the code that wrote them.
 * `test/fixtures/log-v1.json` holds one written before compact log entries (every event a
 * plain object, trace context spelled out in full).
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { expect, it } from "vitest";
import * as Y from "yjs";
import { appendEvents } from "../party/log.ts";
import {
  compactEvent,
  eventAt,
  logHead,
  logSegments,
  logTail,
  type StoredEvent,
  storedEvent,
  traceparentFor,
} from "../protocol/index.ts";

type Fixture = { update: string; events: StoredEvent[] };
const v1: Fixture = JSON.parse(readFileSync(new URL("./fixtures/log-v1.json", import.meta.url), "utf8"));

function load(fixture: Fixture): Y.Doc {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, Buffer.from(fixture.update, "base64"));
  return doc;
}

it("a log written before compact entries reads event for event", () => {
  const segments = logSegments(load(v1));
  expect(logTail(segments)).toBe(1);
  expect(logHead(segments)).toBe(v1.events.length);
  for (const expected of v1.events) expect(eventAt(segments, expected.seq)).toStrictEqual(expected);
});

it("events appended today to an old log read after the old ones, in order", () => {
  const doc = load(v1);
  const segments = logSegments(doc);
  const more = v1.events.map((e, i) => ({ ...e, id: `${e.id}-again`, seq: v1.events.length + i + 1 }));
  doc.transact(() => appendEvents(segments, more));
  // Through a synced copy, as a client reads it.
  const copy = new Y.Doc();
  Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc));
  const read = logSegments(copy);
  expect(logHead(read)).toBe(v1.events.length * 2);
  for (const expected of [...v1.events, ...more]) expect(eventAt(read, expected.seq)).toStrictEqual(expected);
});

/** Events as publishers send them: default trace context, foreign ones, none, and every optional field. */
const events = fc
  .record(
    {
      id: fc.oneof(fc.uuid({ version: 7 }), fc.string({ minLength: 1, maxLength: 20 })),
      type: fc.constantFrom("deal.created", "x"),
      // As a publish frame carries it (JSON: no -0); `__proto__` keys are Yjs' own business.
      data: fc
        .jsonValue({ maxDepth: 2 })
        .map((v) => JSON.parse(JSON.stringify(v)) as StoredEvent["data"])
        .filter((v) => !JSON.stringify(v).includes("__proto__")),
      v: fc.integer({ min: 1, max: 5 }),
      key: fc.string({ maxLength: 10 }),
      causationId: fc.string({ maxLength: 40 }),
      correlation: fc.oneof(fc.constant("own"), fc.string({ maxLength: 40 }), fc.uuid({ version: 4 })),
      trace: fc.oneof(
        fc.constant("derived"),
        fc.constant("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        fc.constant("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
      ),
      span: fc.constantFrom("b7ad6b7169203331", "00f067aa0ba902b7"),
      stream: fc.constantFrom("main", "deals"),
      ts: fc.oneof(fc.integer({ min: 0, max: 2 ** 45 }), fc.double({ min: 0, max: 2 ** 45, noNaN: true })),
      source: fc.constantFrom("sales-1", "publisher"),
    },
    { requiredKeys: ["id", "type", "data", "stream", "ts", "source"] },
  )
  .map(({ correlation, trace, span, ...e }): Omit<StoredEvent, "seq"> => {
    const event: Omit<StoredEvent, "seq"> = { ...e };
    const correlationId = correlation === "own" ? e.id : (correlation ?? "");
    if (correlation !== undefined) event.correlationId = correlationId;
    if (trace === "derived" && correlation !== undefined) event.traceparent = traceparentFor(correlationId, span);
    else if (trace !== undefined && trace !== "derived") event.traceparent = trace;
    return event;
  });

it("a compact entry gives back exactly the event appended, through a synced copy", () => {
  fc.assert(
    fc.property(fc.array(events, { minLength: 1, maxLength: 5 }), (batch) => {
      const appended = batch.map((e, i) => ({ ...e, seq: i + 1 }) as StoredEvent);
      for (const e of appended) expect(storedEvent(compactEvent(e), e.seq)).toStrictEqual(e);
      const doc = new Y.Doc();
      doc.transact(() => appendEvents(logSegments(doc), appended));
      const copy = new Y.Doc();
      Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc));
      for (const e of appended) expect(eventAt(logSegments(copy), e.seq)).toStrictEqual(e);
    }),
    { numRuns: 300 },
  );
});

it("a default event takes at most 60 % of the bytes it took as a plain object", () => {
  const [first] = v1.events as [StoredEvent];
  /** Bytes per event in a document of a hundred of them. */
  const size = (value: unknown) => {
    const doc = new Y.Doc();
    doc.getArray("a").push(Array.from({ length: 100 }, () => value));
    return Y.encodeStateAsUpdate(doc).byteLength / 100;
  };
  expect(size(compactEvent(first))).toBeLessThan(size(first) * 0.6);
});
