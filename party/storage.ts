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
 *
 * Between compactions, a fold replaces the records since the last fold with one record of
 * everything the document gained since then (`Y.encodeStateAsUpdate(doc, sv)`): its cost is
 * that of the new data, where a compaction re-encodes the whole document (a 10,000-event
 * log window took 140–240 ms in workerd, which every subscriber waited for).
 */
import * as Y from "yjs";
import { keys, pad } from "./keys.ts";
import { applyStoredUpdate } from "./lean-decoder.ts";

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
  /** First update record not covered by a fold (absent: `first`). */
  unfolded?: number;
  /** Fold records since the snapshot (absent: 0). */
  folds?: number;
};

/** Stay well under the 128 KiB value limit (keys and encoding overhead count too). */
export const PART_BYTES = 96 * 1024;
const MAX_KEYS_PER_PUT = 128;
/** Update records are read this many keys (parts) at a time when a document loads. */
const LOAD_PAGE_KEYS = 16;
/** Records since the snapshot that trigger a compaction whatever their size (bounds load time). */
const COMPACT_AFTER_RECORDS = 4096;
/**
 * Records since the last fold that trigger a fold. A fold's cost is that of what it folds
 * (the room stalls meanwhile): smaller folds, more often, keep each stall short.
 */
const FOLD_AFTER_RECORDS = 1024;
/** Tail bytes below which a compaction is never worth it. */
const COMPACT_MIN_TAIL_BYTES = 1024 * 1024;
/** Fold records after which the next maintenance is a compaction (bounds the records a load reads). */
const MAX_FOLDS = 8;

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

/**
 * A persisted document: its meta, kept in memory between commits. `foldedAt` is the state
 * vector of the document when everything in it was stored outside the records from
 * `foldFrom` on (at load, the last fold or the last compaction): the next fold encodes from it.
 */
export type StoredDoc = { name: string; meta: DocMeta; foldedAt?: Uint8Array; foldFrom?: number };

/**
 * Loads document `name` into `doc` (which should be empty) and returns its handle.
 * Updates are applied with `origin` so the caller's update listener can skip them.
 */
export async function loadDoc(storage: KvStorage, name: string, doc: Y.Doc, origin: unknown): Promise<StoredDoc> {
  const meta = (await storage.get<DocMeta>(metaKey(name))) ?? { gen: 0, snapParts: 0, first: 0, next: 0, tailBytes: 0 };
  if (meta.gen > 0) {
    const parts = await storage.list({ prefix: snapPrefix(name, meta.gen) });
    if (parts.size !== meta.snapParts) throw new Error(`document ${name}: snapshot ${meta.gen} is incomplete`);
    applyStoredUpdate(doc, join([...parts.values()].map(toBytes)), origin);
  }
  // One record at a time, not `Y.mergeUpdates` first: merging decodes and re-encodes every
  // struct of every record (a 10,000-event log window peaked at ~50 MB of garbage and buffers
  // for a 2.5 MB document), and the records' events that later records deleted are dropped
  // (GC) after each one instead of all being held at once. Read a page of records at a time,
  // too: a log's tail (up to as many bytes as its snapshot) is never all in memory at once.
  let start = updateKey(name, meta.first, 0);
  const end = updateKey(name, meta.next, 0);
  const prefixLength = updatePrefix(name).length;
  let parts: Uint8Array[] = [];
  let current = -1;
  while (meta.next > meta.first) {
    const page = await storage.list({ start, end, limit: LOAD_PAGE_KEYS });
    // Keys sort as record then part, so consecutive parts of one record are adjacent.
    for (const [key, value] of page) {
      const n = Number(key.slice(prefixLength, prefixLength + 10));
      if (n !== current && parts.length > 0) {
        applyStoredUpdate(doc, join(parts), origin);
        parts = [];
      }
      current = n;
      parts.push(toBytes(value));
    }
    if (page.size < LOAD_PAGE_KEYS) break;
    // Exclusive of the last key read: `start` is inclusive, so step just past it.
    start = `${[...page.keys()].at(-1)}\0`;
  }
  if (parts.length > 0) applyStoredUpdate(doc, join(parts), origin);
  return { name, meta, foldedAt: Y.encodeStateVector(doc), foldFrom: meta.next };
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
  stored.meta.next - (stored.meta.unfolded ?? stored.meta.first) >=
    (foldable(stored) ? FOLD_AFTER_RECORDS : COMPACT_AFTER_RECORDS) * slack || needsFullCompaction(stored, slack);

/**
 * Whether the records since the last fold are all covered by `foldedAt`: not so for unfolded
 * records loaded from storage (their content is in the document before `foldedAt`).
 */
const foldable = (stored: StoredDoc): boolean =>
  stored.foldedAt !== undefined && stored.foldFrom === (stored.meta.unfolded ?? stored.meta.first);

/** Whether only a full compaction will do: the tail outweighs the snapshot, or folds piled up. */
const needsFullCompaction = (stored: StoredDoc, slack = 1): boolean =>
  (stored.meta.folds ?? 0) >= MAX_FOLDS ||
  stored.meta.tailBytes >= Math.max(COMPACT_MIN_TAIL_BYTES, stored.meta.snapBytes ?? 0) * slack;

/**
 * What `needsCompaction` asked for, at the cost of the new data when it can: the records since
 * the last fold become one fold record; a full `compact` only when the tail outweighs the
 * snapshot (its cost stays amortised), when folds piled up, or when the fold would not fit in
 * one put. Same contract as `compact`.
 */
export async function compactTail(
  storage: KvStorage,
  stored: StoredDoc,
  doc: Y.Doc,
  later?: (deleting: Promise<void>) => void,
): Promise<void> {
  const { name, meta, foldedAt } = stored;
  const from = meta.unfolded ?? meta.first;
  if (!foldedAt || !foldable(stored) || needsFullCompaction(stored)) return compact(storage, stored, doc, later);
  const n = meta.next;
  // Also what the next batch already applied: stored twice then, which Yjs does not mind.
  const folded = Y.encodeStateAsUpdate(doc, foldedAt);
  // Taken with the encoding: what the document gains while the put is under way is not in it.
  const foldsTo = Y.encodeStateVector(doc);
  const parts = split(folded);
  // The record and the meta that covers it in one put, so record `n` exists exactly when meta
  // says so: a record number is never written twice (a later, shorter append would otherwise
  // pick up stale parts). Too large for one put (~12 MB): the compaction does it.
  if (parts.length >= MAX_KEYS_PER_PUT) return compact(storage, stored, doc, later);
  const entries: Record<string, unknown> = {};
  parts.forEach((part, i) => {
    entries[updateKey(name, n, i)] = part;
  });
  const nextMeta: DocMeta = { ...meta, next: n + 1, unfolded: n + 1, folds: (meta.folds ?? 0) + 1 };
  entries[metaKey(name)] = nextMeta;
  await storage.put(entries);
  stored.meta = nextMeta;
  stored.foldedAt = foldsTo;
  stored.foldFrom = n + 1;
  // The folded records, now also in record `n`. Losing these deletes to a crash leaves them to
  // be applied twice at load (harmless) until the next compaction deletes them.
  await collect(
    async () => [...(await storage.list({ start: updateKey(name, from, 0), end: updateKey(name, n, 0) })).keys()],
    storage,
    later,
  );
}

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
  const foldsTo = Y.encodeStateVector(doc);
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
  stored.foldedAt = foldsTo;
  stored.foldFrom = nextMeta.next;
  // Garbage: the old snapshot and the folded records. Losing these deletes to a crash only
  // leaves unreachable keys behind.
  await collect(
    async () => [
      ...(await storage.list({ prefix: snapPrefix(name, meta.gen) })).keys(),
      ...(await storage.list({ start: updateKey(name, 0, 0), end: updateKey(name, meta.next, 0) })).keys(),
    ],
    storage,
    later,
  );
}

/**
 * Deletes the keys `stale` lists: awaited, or with `later`, handed to it as a promise (the
 * caller's next commits need not wait for garbage).
 */
async function collect(
  stale: () => Promise<string[]>,
  storage: KvStorage,
  later?: (deleting: Promise<void>) => void,
): Promise<void> {
  const deleting = stale().then((keys) => deleteAll(storage, keys));
  if (later) later(deleting);
  else await deleting;
}
