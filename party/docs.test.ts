/**
 * The commit queue of `DocHub` (`docs.ts`) around compaction, over the in-memory store: a
 * burst is committed before the compaction it calls for, a wait for durability asked
 * meanwhile is answered, and commits go on while the compaction's garbage is deleted. On a
 * state document: a log folds and sheds instead of compacting (`storage.test.ts`).
 */
import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { LOG_SEGMENT_SIZE, logHead, logSegments, logTail, segmentOf } from "../protocol/index.ts";
import { eventually } from "../testing/index.ts";
import { DocHub, ROOM } from "./docs.ts";
import { appendEvents } from "./log.ts";
import { MemoryKv } from "./memory-storage.ts";
import { loadDoc } from "./storage.ts";

/** Over 1 MiB: one such write makes the document call for a compaction. */
const BIG = "x".repeat(1_100_000);

async function hub() {
  const fatal: unknown[] = [];
  const docs = new DocHub(new MemoryKv(), (error) => fatal.push(error));
  const doc = await docs.open("state/burst");
  const write = (key: string, value: string) => doc.ydoc.transact(() => doc.ydoc.getMap("m").set(key, value), ROOM);
  return { docs, doc, write, fatal };
}

/** A store whose deletes wait until `release()`; `deletes()` counts those asked for. */
function gatedDeletes() {
  const storage = new MemoryKv();
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const remove = storage.delete.bind(storage);
  let asked = 0;
  storage.delete = async (keys) => {
    asked++;
    await gate;
    return remove(keys);
  };
  return { storage, release: () => release(), deletes: () => asked };
}

describe("commit queue and compaction", () => {
  it("answers a wait for durability asked while the document compacts", async () => {
    const { docs, doc, write, fatal } = await hub();
    write("a", BIG);
    await docs.stored(doc);
    // The commit above calls for a compaction, which follows it: nothing new is pending, so
    // everything applied is stored and this resolves (it used to wait forever).
    let answered = false;
    void docs.stored(doc).then(() => {
      answered = true;
    });
    await eventually(() => expect(answered).toBe(true));
    await eventually(() => expect(doc.stored.meta.gen).toBe(1));
    expect(fatal).toEqual([]);
  });

  it("commits what arrives right after a commit before the compaction that commit called for", async () => {
    const { docs, doc, write, fatal } = await hub();
    write("a", BIG);
    await docs.stored(doc);
    write("b", "next frame of the burst");
    await docs.stored(doc);
    expect(doc.stored.meta.gen).toBe(0);
    await eventually(() => expect(doc.stored.meta.gen).toBe(1));
    expect(doc.ydoc.getMap("m").get("b")).toBe("next frame of the burst");
    expect(fatal).toEqual([]);
  });

  it("stores and broadcasts the next commits while a compaction's folded records are still being deleted", async () => {
    // Deletes wait for `release`: a compaction's garbage of thousands of records took ~100 ms
    // in workerd, and every commit waited behind it.
    const { storage, release, deletes } = gatedDeletes();
    const fatal: unknown[] = [];
    const docs = new DocHub(storage, (error) => fatal.push(error));
    const doc = await docs.open("state/burst");
    const write = (key: string, value: string) => doc.ydoc.transact(() => doc.ydoc.getMap("m").set(key, value), ROOM);
    write("a", BIG);
    await docs.stored(doc);
    await eventually(() => expect(doc.stored.meta.gen).toBe(1));
    await eventually(() => expect(deletes()).toBeGreaterThan(0));
    write("b", "after the compaction");
    let stored = false;
    void docs.stored(doc).then(() => {
      stored = true;
    });
    await eventually(() => expect(stored).toBe(true));
    release();
    // What a restart loads: the new snapshot and the record written since, nothing lost.
    await eventually(async () => {
      const copy = new Y.Doc();
      await loadDoc(storage, "state/burst", copy, "load");
      expect(copy.getMap("m").get("a")).toBe(BIG);
      expect(copy.getMap("m").get("b")).toBe("after the compaction");
    });
    expect(fatal).toEqual([]);
  });

  it("keeps a document loaded until its compaction's deletes are done, so no second copy reads records being deleted", async () => {
    const { storage, release, deletes } = gatedDeletes();
    const fatal: unknown[] = [];
    const docs = new DocHub(storage, (error) => fatal.push(error));
    const doc = await docs.open("state/burst");
    doc.ydoc.transact(() => doc.ydoc.getMap("m").set("a", BIG), ROOM);
    await docs.stored(doc);
    await eventually(() => expect(doc.stored.meta.gen).toBe(1));
    await eventually(() => expect(deletes()).toBeGreaterThan(0));
    // Nothing pending or in flight, nobody subscribed: only the deletes keep it.
    expect(doc.pending ?? doc.inflight).toBeNull();
    expect(docs.unload(doc)).toBe(false);
    release();
    await eventually(() => expect(docs.unload(doc)).toBe(true));
    const again = await docs.open("state/burst");
    expect(again).not.toBe(doc);
    expect(again.ydoc.getMap("m").get("a")).toBe(BIG);
    expect(fatal).toEqual([]);
  });
});

describe("commit queue and a log's maintenance", () => {
  it("folds and sheds a paced log behind its commits, never compacting it, and a reload holds the same window", async () => {
    const storage = new MemoryKv();
    const fatal: unknown[] = [];
    const docs = new DocHub(storage, (error) => fatal.push(error));
    const doc = await docs.open("log/paced");
    const segments = logSegments(doc.ydoc);
    const window = 2048;
    let head = 0;
    const snapshots = new Set<number>();
    // 8 events a batch, as a stream paced at 1,000 events/s commits them; the oldest segment
    // deleted once it left the window, as `streams.ts` archives it.
    while (head < 20_000) {
      const events = Array.from({ length: 8 }, () => {
        head++;
        return { id: `e${head}`, type: "t", data: { n: head }, stream: "s", seq: head, ts: head, source: "w" };
      });
      doc.ydoc.transact(() => appendEvents(segments, events), ROOM);
      const tail = logTail(segments);
      if (tail + LOG_SEGMENT_SIZE - 1 <= head - window)
        doc.ydoc.transact(() => segments.delete(String(segmentOf(tail))), ROOM);
      await docs.stored(doc);
      snapshots.add(doc.stored.meta.snapBytes ?? 0);
    }
    await eventually(() => expect(doc.maintenance).toBeNull());
    expect(doc.stored.meta.gen).toBeGreaterThan(5);
    // Every snapshot it wrote was a stub of GC structs, never the window.
    expect(Math.max(...snapshots)).toBeLessThan(64);
    const copy = new Y.Doc();
    await loadDoc(storage, "log/paced", copy, "load");
    expect(logSegments(copy).toJSON()).toEqual(segments.toJSON());
    expect(logTail(logSegments(copy))).toBe(logTail(segments));
    expect(logHead(logSegments(copy))).toBe(20_000);
    expect(fatal).toEqual([]);
  });
});
