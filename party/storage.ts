/**
 * Durable storage of Yjs documents in a key-value store with PartyKit's limits
 * (128 KiB per value, 128 keys per put).
 *
 * Layout for a document `D`:
 * - `doc|D|meta` → {@link DocMeta}: which snapshot generation is current and which update
 *   records follow it. Writing meta is the commit point of a compaction.
 * - `doc|D|snap|<gen>|<part>` → a slice of `Y.encodeStateAsUpdate` at compaction time.
 * - `doc|D|u|<n>|<part>` → one committed update record (the merge of one commit batch).
 *
 * A record is never rewritten; compaction writes a new generation, flips meta, then deletes
 * what the old meta pointed at. A crash at any step leaves a loadable document.
 */
import * as Y from "yjs";
import { keys, pad } from "./keys.ts";

/** The subset of Durable Object storage this module needs; PartyKit's `room.storage` fits. */
export interface KvStorage {
  get<T = unknown>(key: string): Promise<T | undefined>;
  list<T = unknown>(options: {
    prefix?: string;
    start?: string;
    end?: string;
    limit?: number;
    reverse?: boolean;
  }): Promise<Map<string, T>>;
  put<T>(entries: Record<string, T>): Promise<void>;
  delete(keys: string[]): Promise<number>;
}

export type DocMeta = {
  /** Snapshot generation in use (0 = no snapshot yet). */
  gen: number;
  /** Number of parts of that snapshot. */
  snapParts: number;
  /** First update record that is not folded into the snapshot. */
  first: number;
  /** Next update record number. */
  next: number;
  /** Bytes of update records since the snapshot, to decide when to compact. */
  tailBytes: number;
  /** Size of the snapshot (absent in metas written before it was recorded). */
  snapBytes?: number;
};

/** Stay well under the 128 KiB value limit (keys and encoding overhead count too). */
export const PART_BYTES = 96 * 1024;
const MAX_KEYS_PER_PUT = 128;
/** Records since the snapshot that trigger a compaction whatever their size (bounds load time). */
const COMPACT_AFTER_RECORDS = 4096;
/** Tail bytes below which a compaction is never worth it. */
const COMPACT_MIN_TAIL_BYTES = 1024 * 1024;

const metaKey = keys.docMeta;
const snapPrefix = keys.docSnapPrefix;
const updatePrefix = keys.docUpdatePrefix;
const updateKey = keys.docUpdate;

export function split(bytes: Uint8Array, size = PART_BYTES): Uint8Array[] {
  if (bytes.byteLength <= size) return [bytes];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < bytes.byteLength; i += size) parts.push(bytes.slice(i, i + size));
  return parts;
}

function join(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Writes many entries in as few puts as the 128-keys limit allows. */
export async function putAll(storage: KvStorage, entries: Record<string, unknown>): Promise<void> {
  const keys = Object.keys(entries);
  for (let i = 0; i < keys.length; i += MAX_KEYS_PER_PUT) {
    const batch: Record<string, unknown> = {};
    for (const k of keys.slice(i, i + MAX_KEYS_PER_PUT)) batch[k] = entries[k];
    await storage.put(batch);
  }
}

async function deleteAll(storage: KvStorage, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += MAX_KEYS_PER_PUT) await storage.delete(keys.slice(i, i + MAX_KEYS_PER_PUT));
}

const toBytes = (v: unknown): Uint8Array => {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new Error("stored document part is not binary");
};

/** A persisted document: its meta, kept in memory between commits. */
export type StoredDoc = { name: string; meta: DocMeta };

/**
 * Loads document `name` into `doc` (which should be empty) and returns its handle.
 * Updates are applied with `origin` so the caller's update listener can skip them.
 */
export async function loadDoc(storage: KvStorage, name: string, doc: Y.Doc, origin: unknown): Promise<StoredDoc> {
  const meta = (await storage.get<DocMeta>(metaKey(name))) ?? { gen: 0, snapParts: 0, first: 0, next: 0, tailBytes: 0 };
  const updates: Uint8Array[] = [];
  if (meta.gen > 0) {
    const parts = await storage.list({ prefix: snapPrefix(name, meta.gen) });
    if (parts.size !== meta.snapParts) throw new Error(`document ${name}: snapshot ${meta.gen} is incomplete`);
    updates.push(join([...parts.values()].map(toBytes)));
  }
  if (meta.next > meta.first) {
    const records = await storage.list({
      start: updateKey(name, meta.first, 0),
      end: updateKey(name, meta.next, 0),
    });
    // Keys sort as record then part, so consecutive parts of one record are adjacent.
    let current = -1;
    let parts: Uint8Array[] = [];
    for (const [key, value] of records) {
      const n = Number(key.slice(updatePrefix(name).length, updatePrefix(name).length + 10));
      if (n !== current && parts.length > 0) {
        updates.push(join(parts));
        parts = [];
      }
      current = n;
      parts.push(toBytes(value));
    }
    if (parts.length > 0) updates.push(join(parts));
  }
  // One at a time, not `Y.mergeUpdates` first: merging decodes and re-encodes every struct of
  // every record (a 10,000-event log window peaked at ~50 MB of garbage and buffers for a
  // 2.5 MB document), and the records' events that later records deleted are dropped (GC)
  // after each one instead of all being held at once.
  for (const update of updates) Y.applyUpdate(doc, update, origin);
  return { name, meta };
}

/**
 * Durably appends one update record. `extra` entries (e.g. a stream's head) are written in
 * the same put when they fit, so they commit together with the update.
 */
export async function appendUpdate(
  storage: KvStorage,
  stored: StoredDoc,
  update: Uint8Array,
  extra: Record<string, unknown> = {},
): Promise<void> {
  const { name, meta } = stored;
  const n = meta.next;
  const entries: Record<string, unknown> = { ...extra };
  split(update).forEach((part, i) => {
    entries[updateKey(name, n, i)] = part;
  });
  const nextMeta: DocMeta = { ...meta, next: n + 1, tailBytes: meta.tailBytes + update.byteLength };
  entries[metaKey(name)] = nextMeta;
  await putAll(storage, entries);
  stored.meta = nextMeta;
}

/**
 * Compaction rewrites the whole document, so it waits until the records since the last
 * snapshot weigh as much as the snapshot itself (at least 1 MiB): its cost stays proportional
 * to the bytes written, however large the document. (A fixed record count made a 2 MB log
 * rewrite itself every 256 small appends, and every message waited for that flush.) With
 * `slack` 2: whether it is overdue, and may no longer wait for a burst to end.
 */
export const needsCompaction = (stored: StoredDoc, slack = 1): boolean =>
  stored.meta.next - stored.meta.first >= COMPACT_AFTER_RECORDS * slack ||
  stored.meta.tailBytes >= Math.max(COMPACT_MIN_TAIL_BYTES, stored.meta.snapBytes ?? 0) * slack;

/**
 * Folds every committed record into a new snapshot of `doc`. The caller must not append
 * concurrently (the commit queue in `docs.ts` runs it between batches) until it resolves.
 * With `later`, the old snapshot and records are deleted after it resolves, by the promise
 * handed to `later`: appends may go on meanwhile (they write other keys).
 */
export async function compact(
  storage: KvStorage,
  stored: StoredDoc,
  doc: Y.Doc,
  later?: (deleting: Promise<void>) => void,
): Promise<void> {
  const { name, meta } = stored;
  const gen = meta.gen + 1;
  const snapshot = Y.encodeStateAsUpdate(doc);
  const parts = split(snapshot);
  const entries: Record<string, unknown> = {};
  parts.forEach((part, i) => {
    entries[snapPrefix(name, gen) + pad(i)] = part;
  });
  await putAll(storage, entries);
  const nextMeta: DocMeta = {
    gen,
    snapParts: parts.length,
    first: meta.next,
    next: meta.next,
    tailBytes: 0,
    snapBytes: snapshot.byteLength,
  };
  await storage.put({ [metaKey(name)]: nextMeta });
  stored.meta = nextMeta;
  // Garbage: the old snapshot and the folded records. Losing these deletes to a crash only
  // leaves unreachable keys behind.
  const deleting = (async () => {
    const stale = [
      ...(await storage.list({ prefix: snapPrefix(name, meta.gen) })).keys(),
      ...(await storage.list({ start: updateKey(name, 0, 0), end: updateKey(name, meta.next, 0) })).keys(),
    ];
    await deleteAll(storage, stale);
  })();
  if (later) later(deleting);
  else await deleting;
}
