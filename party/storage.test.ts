/**
 * Document persistence against an in-memory store that enforces Durable Object storage
 * limits (128 KiB per value, 128 keys per put or delete), so passing proves the chunking.
 */
import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import {
  eventAt,
  LOG_SEGMENT_SIZE,
  type LogSegments,
  logHead,
  logSegments,
  logTail,
  type StoredEvent,
  segmentOf,
} from "../protocol/index.ts";
import { appendEvents } from "./log.ts";
import { MAX_KEYS, MAX_VALUE_BYTES, MemoryKv } from "./memory-storage.ts";
import {
  appendUpdate,
  compact,
  compactTail,
  type KvStorage,
  loadDoc,
  needsCompaction,
  type StoredDoc,
} from "./storage.ts";

/** A document with persistence wired like party/docs.ts does: every local transaction is one record. */
async function open(storage: KvStorage, name: string): Promise<{ doc: Y.Doc; stored: StoredDoc }> {
  const doc = new Y.Doc({ gc: true });
  const stored = await loadDoc(storage, name, doc, "loading");
  return { doc, stored };
}

/** Applies `change` and persists the resulting update as one record. */
async function commit(storage: KvStorage, doc: Y.Doc, stored: StoredDoc, change: () => void): Promise<void> {
  const updates: Uint8Array[] = [];
  const listener = (u: Uint8Array) => updates.push(u);
  doc.on("update", listener);
  doc.transact(change);
  doc.off("update", listener);
  await appendUpdate(storage, stored, Y.mergeUpdates(updates), {}, doc);
}

const random = (n: number, seed = 1) => {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
};

const snapshotOf = (doc: Y.Doc) => ({
  json: doc.getMap("m").toJSON(),
  text: doc.getText("t").toString(),
  stateVector: Y.encodeStateVector(doc),
});

describe("the in-memory store", () => {
  it("enforces the limits the chunking is written for", async () => {
    const kv = new MemoryKv();
    await expect(kv.put({ a: new Uint8Array(MAX_VALUE_BYTES + 1) })).rejects.toThrow(RangeError);
    const many: Record<string, number> = {};
    for (let i = 0; i <= MAX_KEYS; i++) many[`k${i}`] = i;
    await expect(kv.put(many)).rejects.toThrow(RangeError);
    expect(kv.data.size).toBe(0);
  });
});

describe("document storage", () => {
  it("starts empty and round trips small updates", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/a");
    expect(stored.meta).toEqual({ gen: 0, snapParts: 0, first: 0, next: 0, tailBytes: 0 });
    await commit(kv, doc, stored, () => doc.getMap("m").set("x", 1));
    await commit(kv, doc, stored, () => doc.getText("t").insert(0, "hello"));
    expect(stored.meta.next).toBe(2);

    const again = await open(kv, "state/a");
    expect(snapshotOf(again.doc)).toEqual(snapshotOf(doc));
    expect(again.stored.meta).toEqual(stored.meta);
  });

  it("round trips an update larger than 128 KiB, and one needing more than 128 keys", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/big");
    const blob = random(300 * 1024);
    await commit(kv, doc, stored, () => doc.getMap("m").set("blob", blob));
    const parts = kv.keysOf("state/big").filter((k) => k.includes("|u|"));
    expect(parts.length).toBeGreaterThan(2);

    // ~13 MB: more parts than one put may carry.
    const huge = random(13 * 1024 * 1024, 7);
    const putsBefore = kv.puts;
    await commit(kv, doc, stored, () => doc.getMap("m").set("huge", huge));
    expect(kv.puts - putsBefore).toBeGreaterThan(1);

    const again = await open(kv, "state/big");
    const m = again.doc.getMap("m");
    expect(Buffer.compare(m.get("blob") as Uint8Array, blob)).toBe(0);
    expect(Buffer.compare(m.get("huge") as Uint8Array, huge)).toBe(0);
    expect(Buffer.compare(Y.encodeStateAsUpdate(again.doc), Y.encodeStateAsUpdate(doc))).toBe(0);
  });

  it("loads a snapshot and many multi-part records read a page at a time, each record whole and in order", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/paged");
    await commit(kv, doc, stored, () => doc.getMap("m").set("before", random(200 * 1024, 3)));
    await compact(kv, stored, doc);
    // Records of 1 to 3 parts, so record boundaries fall anywhere in a page of keys, and each
    // overwrites the last one's key: applied out of order or in pieces, the result would differ.
    for (let i = 0; i < 24; i++) {
      await commit(kv, doc, stored, () => {
        doc.getMap("m").set("blob", random((i % 3) * 100 * 1024 + 1024, i + 10));
        doc.getText("t").insert(doc.getText("t").length, `${i},`);
      });
    }
    expect(kv.keysOf("state/paged").filter((k) => k.includes("|u|")).length).toBeGreaterThan(40);
    const again = await open(kv, "state/paged");
    expect(snapshotOf(again.doc)).toEqual(snapshotOf(doc));
    expect(Buffer.compare(again.doc.getMap("m").get("blob") as Uint8Array, random(2 * 100 * 1024 + 1024, 33))).toBe(0);
    expect(Buffer.compare(Y.encodeStateAsUpdate(again.doc), Y.encodeStateAsUpdate(doc))).toBe(0);
  });

  it("asks for compaction after many records or many bytes", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/count");
    let n = 0;
    while (!needsCompaction(stored)) {
      await commit(kv, doc, stored, () => doc.getMap("m").set(`k${n}`, n));
      n++;
      if (n > 10_000) throw new Error("never asked for compaction");
    }
    expect(n).toBeGreaterThan(10);

    const bytes = await open(kv, "state/bytes");
    await commit(kv, bytes.doc, bytes.stored, () => bytes.doc.getMap("m").set("blob", random(1024)));
    expect(needsCompaction(bytes.stored)).toBe(false);
    await commit(kv, bytes.doc, bytes.stored, () => bytes.doc.getMap("m").set("blob2", random(5 * 1024 * 1024)));
    expect(needsCompaction(bytes.stored)).toBe(true);
    await compact(kv, bytes.stored, bytes.doc);
    expect(needsCompaction(bytes.stored)).toBe(false);
  });

  it("waits with compaction until the records since the snapshot weigh as much as the snapshot", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/amortized");
    const m = doc.getMap("m");
    await commit(kv, doc, stored, () => m.set("big", random(3 * 1024 * 1024)));
    await compact(kv, stored, doc);
    expect(stored.meta.snapBytes).toBeGreaterThan(3 * 1024 * 1024);
    let written = 0;
    for (let i = 0; !needsCompaction(stored); i++) {
      const before = stored.meta.tailBytes;
      await commit(kv, doc, stored, () => m.set(`k${i}`, random(64 * 1024)));
      written += stored.meta.tailBytes - before;
      if (i > 1000) throw new Error("never asked for compaction");
    }
    expect(written).toBeGreaterThanOrEqual(stored.meta.snapBytes ?? 0);
  });

  it("compacts many records into a snapshot: same content, old keys gone, reload identical", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/c");
    const m = doc.getMap("m");
    const t = doc.getText("t");
    for (let i = 0; i < 300; i++) {
      await commit(kv, doc, stored, () => {
        m.set(`k${i % 50}`, { i, payload: "x".repeat(i) });
        if (i % 7 === 0) m.delete(`k${(i + 3) % 50}`);
        t.insert(t.length, `${i},`);
        if (i % 11 === 0) t.delete(0, 2);
      });
    }
    const before = await open(kv, "state/c");
    expect(snapshotOf(before.doc)).toEqual(snapshotOf(doc));
    const updateKeysBefore = kv.keysOf("state/c").filter((k) => k.includes("|u|"));
    expect(updateKeysBefore.length).toBe(300);

    await compact(kv, stored, doc);
    expect(needsCompaction(stored)).toBe(false);
    expect(stored.meta).toMatchObject({ gen: 1, first: 300, next: 300, tailBytes: 0 });
    const keys = kv.keysOf("state/c");
    expect(keys.filter((k) => k.includes("|u|"))).toEqual([]);
    expect(keys.filter((k) => k.includes("|snap|")).length).toBe(stored.meta.snapParts);
    expect(keys.length).toBe(stored.meta.snapParts + 1);

    const after = await open(kv, "state/c");
    expect(snapshotOf(after.doc)).toEqual(snapshotOf(doc));
    expect(Buffer.compare(Y.encodeStateAsUpdate(after.doc), Y.encodeStateAsUpdate(before.doc))).toBe(0);
    expect(after.stored.meta).toEqual(stored.meta);

    // More records on top of the snapshot, then a second compaction drops generation 1.
    for (let i = 0; i < 20; i++) await commit(kv, doc, stored, () => m.set(`late${i}`, i));
    const mixed = await open(kv, "state/c");
    expect(snapshotOf(mixed.doc)).toEqual(snapshotOf(doc));

    await compact(kv, stored, doc);
    expect(stored.meta).toMatchObject({ gen: 2, first: 320, next: 320 });
    const keys2 = kv.keysOf("state/c");
    expect(keys2.some((k) => k.includes("|snap|0000000001|"))).toBe(false);
    expect(keys2.filter((k) => k.includes("|u|"))).toEqual([]);
    const final = await open(kv, "state/c");
    expect(snapshotOf(final.doc)).toEqual(snapshotOf(doc));
    expect(Buffer.compare(Y.encodeStateAsUpdate(final.doc), Y.encodeStateAsUpdate(mixed.doc))).toBe(0);
  });

  it("compacts a snapshot larger than 128 KiB into several parts", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/s");
    for (let i = 0; i < 5; i++)
      await commit(kv, doc, stored, () => doc.getMap("m").set(`b${i}`, random(100_000, i + 1)));
    await compact(kv, stored, doc);
    expect(stored.meta.snapParts).toBeGreaterThan(4);
    const again = await open(kv, "state/s");
    expect(Buffer.compare(Y.encodeStateAsUpdate(again.doc), Y.encodeStateAsUpdate(doc))).toBe(0);
  });

  it("collects what a compaction's lost deletes left behind with the next compaction", async () => {
    const kv = new MemoryKv();
    const { doc, stored } = await open(kv, "state/lost");
    const m = doc.getMap("m");
    for (let i = 0; i < 10; i++) await commit(kv, doc, stored, () => m.set(`k${i}`, i));
    await compact(kv, stored, doc);
    for (let i = 0; i < 10; i++) await commit(kv, doc, stored, () => m.set(`k${i}`, -i));
    // The room dies after the new generation's meta, before the old one and the records go.
    const del = kv.delete.bind(kv);
    kv.delete = async () => {
      throw new Error("crash");
    };
    await expect(compact(kv, stored, doc)).rejects.toThrow("crash");
    kv.delete = del;
    const reloaded = await open(kv, "state/lost");
    expect(reloaded.stored.meta).toMatchObject({ gen: 2, first: 20, next: 20 });
    expect(kv.keysOf("state/lost").some((k) => k.includes("|snap|0000000001|"))).toBe(true);

    await commit(kv, reloaded.doc, reloaded.stored, () => reloaded.doc.getMap("m").set("late", 1));
    await compact(kv, reloaded.stored, reloaded.doc);
    const keys = kv.keysOf("state/lost");
    expect(keys.filter((k) => k.includes("|u|"))).toEqual([]);
    expect(keys.filter((k) => k.includes("|snap|")).every((k) => k.includes("|snap|0000000003|"))).toBe(true);
    const final = await open(kv, "state/lost");
    expect(final.doc.getMap("m").toJSON()).toEqual(reloaded.doc.getMap("m").toJSON());
  });

  it("keeps an append too big for one put whole, and a crash between its puts leaves nothing behind", async () => {
    const kv = new MemoryKv();
    const name = "log/big";
    const { doc, stored } = await open(kv, name);
    const m = doc.getMap("m");
    await commit(kv, doc, stored, () => m.set("a", 1));
    // ~13 MB of content: 136 parts of 96 KiB, more keys than one put takes.
    const bigUpdate = (target: Y.Doc, seed: number) => {
      const updates: Uint8Array[] = [];
      const listener = (u: Uint8Array) => updates.push(u);
      target.on("update", listener);
      target.getMap("m").set("big", random(13 * 1024 * 1024, seed));
      target.off("update", listener);
      return updates[0] as Uint8Array;
    };
    const put = kv.put.bind(kv);
    let puts = 0;
    kv.put = async (entries) => {
      if (++puts === 2) throw new Error("crash");
      return put(entries);
    };
    await expect(appendUpdate(kv, stored, bigUpdate(doc, 7), { "stream|head": 2 }, doc)).rejects.toThrow("crash");
    kv.put = put;
    // What was to commit with the record did not land without it.
    expect(await kv.get("stream|head")).toBeUndefined();
    expect(kv.keysOf(name).some((k) => k.includes("|u|0000000001|"))).toBe(true);

    const reloaded = await open(kv, name);
    expect(reloaded.doc.getMap("m").toJSON()).toEqual({ a: 1 });
    expect(kv.keysOf(name).filter((k) => k.includes("|u|0000000001|"))).toEqual([]);
    // Record 1 written again, shorter: read as itself, not with the crashed one's parts.
    await commit(kv, reloaded.doc, reloaded.stored, () => reloaded.doc.getMap("m").set("b", 2));
    const again = await open(kv, name);
    expect(again.doc.getMap("m").toJSON()).toEqual({ a: 1, b: 2 });

    // Uncut, the big record reloads whole, with what was put with it.
    const big = bigUpdate(again.doc, 9);
    await appendUpdate(kv, again.stored, big, { "stream|head": 3 }, again.doc);
    expect(await kv.get("stream|head")).toBe(3);
    const final = await open(kv, name);
    expect(final.doc.getMap("m").get("b")).toBe(2);
    const read = final.doc.getMap("m").get("big") as Uint8Array;
    const want = random(13 * 1024 * 1024, 9);
    // Compared here: vitest's deep equality walks 13 M elements for minutes.
    expect(read.byteLength).toBe(want.byteLength);
    expect(read.every((byte, i) => byte === want[i])).toBe(true);
  });

  it("keeps documents apart", async () => {
    const kv = new MemoryKv();
    const a = await open(kv, "state/a");
    const b = await open(kv, "state/b");
    await commit(kv, a.doc, a.stored, () => a.doc.getMap("m").set("who", "a"));
    await commit(kv, b.doc, b.stored, () => b.doc.getMap("m").set("who", "b"));
    await compact(kv, a.stored, a.doc);
    expect((await open(kv, "state/a")).doc.getMap("m").toJSON()).toEqual({ who: "a" });
    expect((await open(kv, "state/b")).doc.getMap("m").toJSON()).toEqual({ who: "b" });
  });

  // Regression: keys once joined names with `:`, which names may contain, so the meta key of
  // `state/x:u:0000000000` sorted inside the update range of `state/x` (party/keys.ts now
  // joins with `|`, which no name can contain).
  it("keeps documents apart when one name extends another with ':'", async () => {
    const kv = new MemoryKv();
    const x = await open(kv, "state/x");
    const evil = await open(kv, "state/x:u:0000000000");
    await commit(kv, x.doc, x.stored, () => x.doc.getMap("m").set("who", "x"));
    await commit(kv, evil.doc, evil.stored, () => evil.doc.getMap("m").set("who", "evil"));
    expect((await open(kv, "state/x")).doc.getMap("m").toJSON()).toEqual({ who: "x" });
    await compact(kv, x.stored, x.doc);
    expect((await open(kv, "state/x:u:0000000000")).doc.getMap("m").toJSON()).toEqual({ who: "evil" });
  });
});

/** A stream-like log: appended events, the oldest trimmed, one record per event. */
async function logUntilMaintenance(kv: KvStorage, doc: Y.Doc, stored: StoredDoc, start: number): Promise<number> {
  const log = doc.getArray<string>("log");
  let i = start;
  while (!needsCompaction(stored)) {
    await commit(kv, doc, stored, () => {
      log.push([`event ${i} ${"x".repeat(i % 40)}`]);
      if (log.length > 1000) log.delete(0, 1);
    });
    i++;
  }
  return i;
}

const updateRecords = (kv: MemoryKv, name: string) =>
  new Set(
    kv
      .keysOf(name)
      .filter((k) => k.includes("|u|"))
      .map((k) => k.split("|")[3]),
  ).size;

describe("folding the records since the last fold", () => {
  it("replaces many records by one without changing the loaded document, then compacts once folds pile up", async () => {
    const kv = new MemoryKv();
    const name = "log/fold";
    const { doc, stored } = await open(kv, name);
    let i = await logUntilMaintenance(kv, doc, stored, 0);
    const before = await open(kv, name);
    expect(updateRecords(kv, name)).toBeGreaterThanOrEqual(1024);
    await compactTail(kv, stored, doc);
    expect(stored.meta).toMatchObject({ gen: 0, folds: 1 });
    expect(updateRecords(kv, name)).toBe(1);
    const after = await open(kv, name);
    expect(after.doc.getArray("log").toJSON()).toEqual(doc.getArray("log").toJSON());
    expect(Buffer.compare(Y.encodeStateAsUpdate(after.doc), Y.encodeStateAsUpdate(before.doc))).toBe(0);

    // Further folds each leave one record more; the one after the last allowed fold compacts.
    let folds = 1;
    while (stored.meta.gen === 0) {
      i = await logUntilMaintenance(kv, doc, stored, i);
      await compactTail(kv, stored, doc);
      if (stored.meta.gen === 0) {
        folds++;
        expect(stored.meta.folds).toBe(folds);
        expect(updateRecords(kv, name)).toBe(folds);
      }
      const again = await open(kv, name);
      expect(again.doc.getArray("log").toJSON()).toEqual(doc.getArray("log").toJSON());
      expect(Buffer.compare(Y.encodeStateVector(again.doc), Y.encodeStateVector(doc))).toBe(0);
    }
    expect(folds).toBeGreaterThan(1);
    expect(stored.meta.gen).toBe(1);
    expect(stored.meta.folds ?? 0).toBe(0);
    expect(updateRecords(kv, name)).toBe(0);
  });

  it("loses nothing the document gains while the fold is being stored", async () => {
    const kv = new MemoryKv();
    const name = "log/race";
    const { doc, stored } = await open(kv, name);
    const i = await logUntilMaintenance(kv, doc, stored, 0);
    const m = doc.getMap("m");
    // As in docs.ts: the next batch is applied while the fold's put is under way.
    const put = kv.put.bind(kv);
    let late: Uint8Array | undefined;
    kv.put = async (entries) => {
      doc.once("update", (u: Uint8Array) => {
        late = u;
      });
      m.set("late", "applied during the fold");
      return put(entries);
    };
    await compactTail(kv, stored, doc);
    kv.put = put;
    await appendUpdate(kv, stored, late as Uint8Array);
    await logUntilMaintenance(kv, doc, stored, i);
    await compactTail(kv, stored, doc);
    expect(stored.meta).toMatchObject({ gen: 0, folds: 2 });
    const again = await open(kv, name);
    expect(again.doc.getArray("log").toJSON()).toEqual(doc.getArray("log").toJSON());
    expect(again.doc.getMap("m").get("late")).toBe("applied during the fold");
  });

  it("reloads the same document whatever step a crash interrupts", async () => {
    const kv = new MemoryKv();
    const name = "log/crash";
    const { doc, stored } = await open(kv, name);
    await logUntilMaintenance(kv, doc, stored, 0);
    const expected = doc.getArray("log").toJSON();

    // Crash before the fold record and its meta are written: nothing changed.
    const put = kv.put.bind(kv);
    kv.put = async () => {
      throw new Error("crash");
    };
    await expect(compactTail(kv, { ...stored }, doc)).rejects.toThrow("crash");
    kv.put = put;
    const unchanged = await open(kv, name);
    expect(unchanged.stored.meta).toEqual(stored.meta);
    expect(unchanged.doc.getArray("log").toJSON()).toEqual(expected);

    // Crash after the fold record, before the folded records are deleted: both load, same state.
    const del = kv.delete.bind(kv);
    kv.delete = async () => {
      throw new Error("crash");
    };
    await expect(compactTail(kv, stored, doc)).rejects.toThrow("crash");
    kv.delete = del;
    const twice = await open(kv, name);
    expect(twice.stored.meta.folds).toBe(1);
    expect(updateRecords(kv, name)).toBeGreaterThan(1024);
    expect(twice.doc.getArray("log").toJSON()).toEqual(expected);
    expect(Buffer.compare(Y.encodeStateVector(twice.doc), Y.encodeStateVector(doc))).toBe(0);

    // The reloaded instance goes on folding (the records left behind are in the fold record
    // already); the compaction after the last fold deletes them.
    const left = updateRecords(kv, name);
    for (let i = 1_000_000; twice.stored.meta.gen === 0; i += 10_000) {
      await logUntilMaintenance(kv, twice.doc, twice.stored, i);
      await compactTail(kv, twice.stored, twice.doc);
      if (twice.stored.meta.gen === 0) expect(updateRecords(kv, name)).toBe(left + (twice.stored.meta.folds ?? 0) - 1);
    }
    expect(updateRecords(kv, name)).toBe(0);
    const last = await open(kv, name);
    expect(last.doc.getArray("log").toJSON()).toEqual(twice.doc.getArray("log").toJSON());
  });

  it("folds after a reload only once the records it did not write are compacted", async () => {
    const kv = new MemoryKv();
    const name = "log/reload";
    const first = await open(kv, name);
    for (let i = 0; i < 100; i++) await commit(kv, first.doc, first.stored, () => first.doc.getArray("log").push([i]));
    const second = await open(kv, name);
    await logUntilMaintenance(kv, second.doc, second.stored, 100);
    await compactTail(kv, second.stored, second.doc);
    expect(second.stored.meta).toMatchObject({ gen: 1 });
    await logUntilMaintenance(kv, second.doc, second.stored, 10_000);
    await compactTail(kv, second.stored, second.doc);
    expect(second.stored.meta).toMatchObject({ gen: 1, folds: 1 });
    const third = await open(kv, name);
    expect(third.doc.getArray("log").toJSON()).toEqual(second.doc.getArray("log").toJSON());
    // Right after a fold nothing is unfolded, so the reloaded instance folds at once.
    await logUntilMaintenance(kv, third.doc, third.stored, 20_000);
    await compactTail(kv, third.stored, third.doc);
    expect(third.stored.meta).toMatchObject({ gen: 1, folds: 2 });
    expect((await open(kv, name)).doc.getArray("log").toJSON()).toEqual(third.doc.getArray("log").toJSON());
  });
});

/**
 * A stream's log as the room keeps it (`party/log.ts`, `streams.ts`): events appended in
 * segments, the oldest whole segment deleted once it falls out of the window, one record per
 * batch, and the maintenance `docs.ts` runs whenever it is asked for.
 */
class LogRun {
  readonly segments: LogSegments;
  head = 0;
  /** The largest single put and the number of compactions that re-encoded the whole document. */
  maintenancePut = 0;
  fullCompactions = 0;

  constructor(
    readonly kv: MemoryKv,
    readonly doc: Y.Doc,
    public stored: StoredDoc,
    readonly window: number,
  ) {
    this.segments = logSegments(doc);
  }

  static async open(kv: MemoryKv, name: string, window: number): Promise<LogRun> {
    const doc = new Y.Doc({ gc: true });
    const stored = await loadDoc(kv, name, doc, "loading", { shed: true });
    const run = new LogRun(kv, doc, stored, window);
    run.head = logHead(run.segments);
    return run;
  }

  /** Appends `batch` events as one record, archives what left the window, maintains (unless told not to). */
  async append(batch: number, maintain = true): Promise<void> {
    const events = Array.from({ length: batch }, () => logEvent(++this.head));
    await commit(this.kv, this.doc, this.stored, () => appendEvents(this.segments, events));
    for (;;) {
      const tail = logTail(this.segments);
      if (tail + LOG_SEGMENT_SIZE - 1 > this.head - this.window) break;
      await commit(this.kv, this.doc, this.stored, () => this.segments.delete(String(segmentOf(tail))));
    }
    if (maintain && needsCompaction(this.stored)) await this.maintain();
  }

  async maintain(): Promise<void> {
    const gen = this.stored.meta.gen;
    const put = this.kv.put.bind(this.kv);
    this.kv.put = async (entries) => {
      const bytes = Object.values(entries).reduce<number>(
        (n, v) => n + (v instanceof Uint8Array ? v.byteLength : 0),
        0,
      );
      this.maintenancePut = Math.max(this.maintenancePut, bytes);
      return put(entries);
    };
    try {
      await compactTail(this.kv, this.stored, this.doc);
    } finally {
      this.kv.put = put;
    }
    if (this.stored.meta.gen > gen && (this.stored.meta.snapBytes ?? 0) > 1024) this.fullCompactions++;
  }
}

const logEvent = (seq: number): StoredEvent => ({
  id: `evt-${seq}`,
  type: "bench.fanout",
  data: { n: seq, deal: `D-${seq % 997}`, amount: 1234.5, note: "benchmark event" },
  stream: "s",
  seq,
  ts: 1_700_000_000_000 + seq,
  source: "publisher",
});

/** The events a log document holds, by seq. */
const eventsOf = (doc: Y.Doc) => {
  const segments = logSegments(doc);
  const out: number[] = [];
  for (let seq = logTail(segments); seq <= logHead(segments); seq++) out.push(eventAt(segments, seq)?.seq ?? -seq);
  return out;
};

/** What a reader sees of `doc`: its content, its state vector, and both again from its encoded state. */
const logView = (doc: Y.Doc) => {
  const copy = new Y.Doc();
  Y.applyUpdate(copy, Y.encodeStateAsUpdate(doc));
  return {
    segments: logSegments(doc).toJSON(),
    stateVector: Y.decodeStateVector(Y.encodeStateVector(doc)),
    encoded: logSegments(copy).toJSON(),
    encodedStateVector: Y.decodeStateVector(Y.encodeStateVector(copy)),
  };
};

const storedBytes = (kv: MemoryKv, name: string) =>
  kv
    .keysOf(name)
    .map((k) => kv.data.get(k))
    .reduce<number>((n, v) => n + (v instanceof Uint8Array ? v.byteLength : 0), 0);

describe("a log sheds what died instead of compacting", () => {
  it("stores about its live window however long it runs, each maintenance step small, and loads the same", async () => {
    const kv = new MemoryKv();
    const name = "log/shed";
    const run = await LogRun.open(kv, name, 3000);
    let checks = 0;
    // 8 events a record, as a stream paced at 1,000 events/s commits them.
    while (run.head < 40_000) {
      await run.append(8);
      if (run.head % 4000 === 0) {
        const again = await LogRun.open(kv, name, 3000);
        expect(logView(again.doc)).toEqual(logView(run.doc));
        checks++;
      }
    }
    expect(checks).toBe(10);
    expect(eventsOf(run.doc).length).toBeGreaterThanOrEqual(3000);
    // Never the whole window re-encoded: stubs only, each a few bytes.
    expect(run.fullCompactions).toBe(0);
    expect(run.stored.meta.gen).toBeGreaterThan(10);
    expect(run.stored.meta.snapBytes).toBeLessThan(64);
    const window = Y.encodeStateAsUpdate(run.doc).byteLength;
    expect(run.maintenancePut).toBeLessThan(window / 4);
    // The live window and a fold or so of slack, not the history.
    expect(storedBytes(kv, name)).toBeLessThan(window * 1.5);
    expect(run.stored.meta.folds).toBeLessThan(40);
  });

  it("keeps a burst's big records as they are instead of encoding them again, and sheds them once dead", async () => {
    const kv = new MemoryKv();
    const name = "log/burst";
    const run = await LogRun.open(kv, name, 2048);
    const records = () => kv.keysOf(name).filter((k) => k.includes("|u|")).length;
    // ~20 KB a record: big enough to be kept.
    await run.append(200, false);
    await run.append(200, false);
    expect(needsCompaction(run.stored)).toBe(true);
    const before = { next: run.stored.meta.next, records: records() };
    await run.maintain();
    expect(run.stored.meta).toMatchObject({ next: before.next, unfolded: before.next, gen: 0 });
    expect(records()).toBe(before.records);
    expect(run.maintenancePut).toBe(0);
    expect(logView((await LogRun.open(kv, name, 2048)).doc)).toEqual(logView(run.doc));
    // Kept records die and are shed like folds (an archive's small delete between them or
    // not); the whole window is never encoded again, nor any record.
    while (run.head < 20_000) await run.append(200);
    expect(run.fullCompactions).toBe(0);
    expect(run.stored.meta.gen).toBeGreaterThan(3);
    expect(run.maintenancePut).toBeLessThan(1024);
    expect(storedBytes(kv, name)).toBeLessThan(Y.encodeStateAsUpdate(run.doc).byteLength * 1.5);
    expect(logView((await LogRun.open(kv, name, 2048)).doc)).toEqual(logView(run.doc));
  });

  it("does not shed a deleted map entry whose key was set again since", async () => {
    const kv = new MemoryKv();
    const name = "log/reused";
    const run = await LogRun.open(kv, name, 1024);
    const m = run.doc.getMap("m");
    await commit(kv, run.doc, run.stored, () => m.set("k", "first"));
    await commit(kv, run.doc, run.stored, () => m.delete("k"));
    for (let i = 0; i < 20; i++) await run.append(8, false);
    // A fold whose bound covers the deleted entry and 160 events...
    await compactTail(kv, run.stored, run.doc);
    expect(run.stored.meta).toMatchObject({ gen: 0, folds: 1 });
    // ...all archived later, so only the entry could keep it, and it is set again meanwhile:
    // the new entry's origin is the old one, which a stub would make GC at load.
    while (logTail(run.segments) <= 160) await run.append(8, false);
    await commit(kv, run.doc, run.stored, () => m.set("k", "again"));
    await compactTail(kv, run.stored, run.doc);
    expect(run.stored.meta).toMatchObject({ gen: 0, folds: 2 });
    const again = await LogRun.open(kv, name, 1024);
    expect(again.doc.getMap("m").get("k")).toBe("again");
    expect(logView(again.doc)).toEqual(logView(run.doc));
  });

  it("folds an earlier instance's unfolded records after a reload, then sheds them", async () => {
    const kv = new MemoryKv();
    const name = "log/reload";
    const first = await LogRun.open(kv, name, 2048);
    for (let i = 0; i < 100; i++) await first.append(1);
    expect(first.stored.meta.folds ?? 0).toBe(0);
    const second = await LogRun.open(kv, name, 2048);
    expect(second.stored.foldFrom).toBe(0);
    while (second.stored.meta.folds === undefined) await second.append(8);
    // The fold took the 100 records the first instance left unfolded.
    expect(updateRecords(kv, name)).toBeLessThanOrEqual(2);
    while (second.stored.meta.gen === 0) await second.append(8);
    expect(second.stored.meta.first).toBeGreaterThan(0);
    const third = await LogRun.open(kv, name, 2048);
    expect(logView(third.doc)).toEqual(logView(second.doc));
  });

  // Small records are folded; big ones (a burst's frames) are kept as they are.
  it.each([
    ["a fold", 8],
    ["keeping big records", 200],
  ])(
    "reloads the same log whatever step of %s and shed a crash interrupts, and writes no record twice",
    async (_, batch) => {
      const name = "log/crash";
      // Each op of one maintenance step fails in turn (puts, then deletes), on a copy of the store.
      for (let step = 0; ; step++) {
        const kv = new MemoryKv();
        const written = new Set<string>();
        const put = kv.put.bind(kv);
        kv.put = async (entries) => {
          for (const key of Object.keys(entries)) {
            if (key.includes("|u|")) {
              expect(written.has(key), `record key ${key} written twice`).toBe(false);
              written.add(key);
            }
          }
          return put(entries);
        };
        const run = await LogRun.open(kv, name, 2048);
        // Up to a maintenance that folds and sheds: everything older than the window is dead.
        while (run.head < 8000) await run.append(batch);
        // Then without maintenance until two more segments died: the next step has a fold to shed.
        const tail = logTail(run.segments);
        while (logTail(run.segments) < tail + 2 * LOG_SEGMENT_SIZE || !needsCompaction(run.stored))
          await run.append(batch, false);
        const expected = logView(run.doc);
        const genBefore = run.stored.meta.gen;
        let ops = 0;
        let crashed = false;
        const fail =
          <A extends unknown[], R>(op: (...args: A) => Promise<R>) =>
          async (...args: A): Promise<R> => {
            if (ops++ === step) {
              crashed = true;
              throw new Error("crash");
            }
            return op(...args);
          };
        const [livePut, liveDelete] = [kv.put, kv.delete.bind(kv)];
        kv.put = fail(livePut);
        kv.delete = fail(liveDelete);
        const outcome = await compactTail(kv, run.stored, run.doc).then(
          () => "done",
          (error: Error) => error.message,
        );
        expect(outcome).toBe(crashed ? "crash" : "done");
        kv.put = livePut;
        kv.delete = liveDelete;
        const after = await LogRun.open(kv, name, 2048);
        expect(logView(after.doc)).toEqual(expected);
        // The reloaded instance goes on, folds and sheds what a crash left behind, and loads the same.
        while (after.head < run.head + 6000) await after.append(batch);
        const last = await LogRun.open(kv, name, 2048);
        expect(logView(last.doc)).toEqual(logView(after.doc));
        expect(eventsOf(last.doc)).toEqual(eventsOf(after.doc));
        expect(after.stored.meta.gen).toBeGreaterThan(genBefore);
        if (!crashed) {
          // The uninterrupted step folded (or kept the records) and shed; each op of it crashed above.
          expect(run.stored.meta.gen).toBeGreaterThan(genBefore);
          expect(step).toBeGreaterThanOrEqual(batch === 8 ? 3 : 2);
          break;
        }
      }
    },
  );
});
