/**
 * Review fuzz of a log's shedding (`storage.ts` `shedDead`, `adopt`): random batch sizes (paced
 * records and burst records), folds run with a batch already applied but not yet stored (as
 * `docs.ts` maintains between commits), and reloads that carry on with a new Yjs client id.
 * Every reload must hold exactly what the live document holds.
 */
import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { LOG_SEGMENT_SIZE, logHead, logSegments, logTail, type StoredEvent, segmentOf } from "../protocol/index.ts";
import { seededRandom } from "../test/harness.ts";
import { appendEvents } from "./log.ts";
import { MemoryKv } from "./memory-storage.ts";
import { appendUpdate, compactTail, loadDoc, needsCompaction, type StoredDoc } from "./storage.ts";

const event = (seq: number, big: boolean): StoredEvent => ({
  id: `e-${seq}`,
  type: "t",
  data: { n: seq, pad: big ? "x".repeat(400) : "y" },
  stream: "s",
  seq,
  ts: 1_700_000_000_000 + seq,
  source: "p",
});

class Instance {
  pending: Uint8Array[] = [];
  head: number;
  constructor(
    readonly kv: MemoryKv,
    readonly doc: Y.Doc,
    readonly stored: StoredDoc,
  ) {
    this.head = logHead(logSegments(doc));
    doc.on("update", (u: Uint8Array, origin: unknown) => {
      if (origin !== "loading") this.pending.push(u);
    });
  }
  static async open(kv: MemoryKv) {
    const doc = new Y.Doc({ gc: true });
    const stored = await loadDoc(kv, "log/f", doc, "loading", { shed: true });
    return new Instance(kv, doc, stored);
  }
  apply(n: number, big: boolean, window: number) {
    const segments = logSegments(this.doc);
    const events = Array.from({ length: n }, () => event(++this.head, big));
    this.doc.transact(() => appendEvents(segments, events), "room");
    for (;;) {
      const tail = logTail(segments);
      if (tail + LOG_SEGMENT_SIZE - 1 > this.head - window) break;
      this.doc.transact(() => segments.delete(String(segmentOf(tail))), "room");
    }
  }
  async commit() {
    if (this.pending.length === 0) return;
    const merged = Y.mergeUpdates(this.pending);
    this.pending = [];
    await appendUpdate(this.kv, this.stored, merged, {}, this.doc);
  }
}

describe("review: shedding fuzz", () => {
  for (let seed = 1; seed <= 6; seed++) {
    it(`seed ${seed}: reloads equal the live log`, async () => {
      const r = seededRandom(seed);
      const kv = new MemoryKv();
      let inst = await Instance.open(kv);
      const window = 300 + Math.floor(r() * 3000);
      let reloads = 0;
      for (let step = 0; step < 1500; step++) {
        const big = r() < 0.3;
        inst.apply(big ? 20 + Math.floor(r() * 60) : 1 + Math.floor(r() * 8), big, window);
        await inst.commit();
        if (needsCompaction(inst.stored)) {
          // As docs.ts: the next batch may already be applied while the fold runs.
          if (r() < 0.5) inst.apply(1 + Math.floor(r() * 5), r() < 0.3, window);
          await compactTail(kv, inst.stored, inst.doc);
          await inst.commit();
        }
        if (r() < 0.02) {
          await inst.commit();
          const again = await Instance.open(kv);
          expect(logSegments(again.doc).toJSON()).toEqual(logSegments(inst.doc).toJSON());
          inst.doc.destroy();
          inst = again; // carries on with a new client id
          reloads++;
        }
      }
      await inst.commit();
      const last = await Instance.open(kv);
      expect(logSegments(last.doc).toJSON()).toEqual(logSegments(inst.doc).toJSON());
      expect(reloads).toBeGreaterThan(0);
      expect(inst.stored.meta.gen).toBeGreaterThan(0);
    }, 120_000);
  }
});

/** A MemoryKv that fails every write once `budget` writes were made (the room killed there). */
class CrashKv extends MemoryKv {
  budget = Number.POSITIVE_INFINITY;
  written = new Map<string, string>();
  twice: string[] = [];
  override async put<T>(entries: Record<string, T>): Promise<void> {
    if (this.budget-- <= 0) throw new Error("crashed");
    for (const [k, v] of Object.entries(entries)) {
      if (!k.includes("|u|")) continue;
      const text = String(v instanceof Uint8Array ? [...v].join(",") : v);
      const was = this.written.get(k);
      if (was !== undefined && was !== text) this.twice.push(k);
      this.written.set(k, text);
    }
    return super.put(entries);
  }
  override async delete(keys: string[]): Promise<number> {
    if (this.budget-- <= 0) throw new Error("crashed");
    return super.delete(keys);
  }
}

describe("review: shedding fuzz with crashes", () => {
  for (let seed = 1; seed <= 5; seed++) {
    it(`seed ${seed}: a crash at any write reloads what was acknowledged`, async () => {
      const r = seededRandom(seed * 7919);
      const kv = new CrashKv();
      let inst = await Instance.open(kv);
      const window = 300 + Math.floor(r() * 2000);
      let acked = logSegments(inst.doc).toJSON();
      let crashes = 0;
      for (let step = 0; step < 1500; step++) {
        if (r() < 0.03) kv.budget = Math.floor(r() * 6);
        let live: unknown;
        try {
          const big = r() < 0.3;
          inst.apply(big ? 20 + Math.floor(r() * 60) : 1 + Math.floor(r() * 8), big, window);
          live = logSegments(inst.doc).toJSON();
          await inst.commit();
          acked = logSegments(inst.doc).toJSON();
          if (needsCompaction(inst.stored)) {
            if (r() < 0.5) inst.apply(1 + Math.floor(r() * 5), r() < 0.3, window);
            live = logSegments(inst.doc).toJSON();
            await compactTail(kv, inst.stored, inst.doc);
            await inst.commit();
            acked = logSegments(inst.doc).toJSON();
          }
        } catch (e) {
          expect((e as Error).message).toBe("crashed");
          kv.budget = Number.POSITIVE_INFINITY;
          inst.doc.destroy();
          inst = await Instance.open(kv);
          const got = logSegments(inst.doc).toJSON();
          if (JSON.stringify(got) !== JSON.stringify(live)) expect(got).toEqual(acked);
          acked = got;
          crashes++;
        }
      }
      await inst.commit();
      const last = await Instance.open(kv);
      expect(logSegments(last.doc).toJSON()).toEqual(logSegments(inst.doc).toJSON());
      expect(kv.twice).toEqual([]);
      expect(crashes).toBeGreaterThan(3);
    }, 120_000);
  }
});

describe("review: a crash between a shed and its deletes", () => {
  it("leaves no unreachable record or snapshot behind once the log sheds again", async () => {
    const kv = new MemoryKv();
    const put = kv.put.bind(kv);
    const del = kv.delete.bind(kv);
    let crashNextDelete = false;
    let crashed = 0;
    let sheds = 0;
    kv.put = async (entries) => {
      await put(entries);
      // The third shed's put (a new snapshot generation and its meta): its deletes never happen.
      if (Object.keys(entries).some((k) => k.includes("|snap|")) && ++sheds === 3) crashNextDelete = true;
    };
    kv.delete = async (keys) => {
      if (crashNextDelete) {
        crashNextDelete = false;
        crashed++;
        throw new Error("crashed");
      }
      return del(keys);
    };
    let inst = await Instance.open(kv);
    for (let step = 0; step < 3000; step++) {
      inst.apply(6, false, 1000);
      try {
        await inst.commit();
        if (needsCompaction(inst.stored)) await compactTail(kv, inst.stored, inst.doc);
      } catch (e) {
        expect((e as Error).message).toBe("crashed");
        inst = await Instance.open(kv);
      }
    }
    expect(crashed).toBe(1);
    const { meta } = inst.stored;
    expect(meta.gen).toBeGreaterThan(2);
    const records = [...kv.data.keys()].filter((k) => k.startsWith("doc|log/f|u|"));
    const below = records.filter((k) => Number(k.split("|")[3]) < meta.first);
    const snaps = [...kv.data.keys()].filter((k) => k.startsWith("doc|log/f|snap|"));
    expect({ below, snaps: snaps.filter((k) => Number(k.split("|")[3]) !== meta.gen) }).toEqual({
      below: [],
      snaps: [],
    });
  }, 60_000);
});
