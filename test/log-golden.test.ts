/**
 * Golden log documents: a `log/<stream>` document as an older room wrote it must still read,
 * event for event, with today's readers — stored logs outlive the code that wrote them.
 * `test/fixtures/log-v1.json` holds one written before compact log entries (every event a
 * plain object, trace context spelled out in full).
 */
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import * as Y from "yjs";
import { appendEvents } from "../party/log.ts";
import { eventAt, logHead, logSegments, logTail, type StoredEvent } from "../protocol/index.ts";

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
