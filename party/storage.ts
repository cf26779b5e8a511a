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
 *
 * Logs (`LoadOptions.shed`) never need that compaction: their content dies a whole segment at
 * a time, oldest first. Once everything the snapshot and the oldest records hold is dead in
 * the live document, they are replaced by a new snapshot generation made only of GC structs
 * for the same clock ranges (`gcStub`), which is how Yjs itself stores collected content. So
 * a log is stored as its live window, a fold or two of slack and a few bytes of stubs, and
 * every maintenance step costs what it touches: small folds (by bytes) and tiny stubs.
 */
import * as encoding from "lib0/encoding";
import * as Y from "yjs";
import { keys, pad } from "./keys.ts";
import { applyStoredUpdate } from "./lean-decoder.ts";

type ListOptions = { prefix?: string; start?: string; end?: string; limit?: number; reverse?: boolean };

/** The subset of Durable Object storage this module needs; PartyKit's `room.storage` fits. */
export interface KvStorage {
  get<T = unknown>(key: string): Promise<T | undefined>;
  list<T = unknown>(options: ListOptions): Promise<Map<string, T>>;
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
/**
 * Bytes of records since the last fold that trigger a fold of a log: a fold's cost is that of
 * what it folds (encoding ~230 paced events took ~1 ms in Node, ~5 in workerd), and the room
 * stalls meanwhile, so a log folds in small steps. Its folds hold only live content (the dead
 * ones are shed), so many small ones cost a load nothing but a few keys.
 */
const SHED_FOLD_BYTES = 32 * 1024;
/**
 * Records since a log's last fold at least this large on average are kept as they are
 * instead of being folded (`adopt`): they are few keys already, and folding them would only
 * encode them again (a burst's frames).
 */
const SHED_BIG_RECORD = 8 * 1024;
/**
 * Pieces before a log's unfolded records (folds and runs of kept records, each at least
 * {@link SHED_FOLD_BYTES}) after which it compacts after all: never at the default window
 * (~10,000 events, 1.5–2.5 MB, so at most ~80); a safety net for a log whose oldest content
 * does not die.
 */
const SHED_MAX_FOLDS = 256;

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

/**
 * Writes many entries in as few puts as the 128-keys limit allows. The last put holds the last
 * 128 keys, so the entries named last (a meta, with what must commit with it) land together,
 * after all the others.
 */
export async function putAll(storage: KvStorage, entries: Record<string, unknown>): Promise<void> {
  const keys = Object.keys(entries);
  // The first put takes the remainder: every later one is full, and the last ends with the last key.
  let end = ((keys.length - 1) % MAX_KEYS_PER_PUT) + 1;
  for (let start = 0; start < keys.length; start = end, end += MAX_KEYS_PER_PUT) {
    const batch: Record<string, unknown> = {};
    for (const k of keys.slice(start, end)) batch[k] = entries[k];
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
export type StoredDoc = { name: string; meta: DocMeta; foldedAt?: Uint8Array; foldFrom?: number; shed?: Shedding };

/** Per client, a clock: what a state vector says, as `Y.decodeStateVector` gives it. */
type Clocks = Map<number, number>;

/** What a log (`LoadOptions.shed`) keeps in memory to find what it may shed (`shedDead`). */
type Shedding = {
  /**
   * The stored pieces in load order, oldest first: the snapshot, then each record before
   * `meta.unfolded` (the folds). `end`: the first record after the piece; `to`: the document's
   * state vector once it was applied, so everything it holds lies below `to`.
   */
  bounds: { end: number; to: Clocks; bytes: number }[];
  /** Per client, the clock below which every struct of the live document is known dead. */
  deadTo: Clocks;
  /** Bytes of the records since the last fold. */
  unfoldedBytes: number;
  /** The document's state vector right after the last record was appended, if known. */
  appendedTo?: Clocks;
};

export type LoadOptions = {
  /**
   * The document is a log: deleted map entries are never set again (a segment number is not
   * reused), so an entry deleted with its content may be stored as a GC struct, and what the
   * oldest records hold is shed once it is all dead instead of compacted (`shedDead`).
   */
  shed?: boolean;
};

const clocksOf = (doc: Y.Doc): Clocks => {
  const clocks: Clocks = new Map();
  for (const [client, structs] of doc.store.clients) {
    const last = structs.at(-1);
    if (last) clocks.set(client, last.id.clock + last.length);
  }
  return clocks;
};

/**
 * Loads document `name` into `doc` (which should be empty) and returns its handle.
 * Updates are applied with `origin` so the caller's update listener can skip them.
 */
export async function loadDoc(
  storage: KvStorage,
  name: string,
  doc: Y.Doc,
  origin: unknown,
  options: LoadOptions = {},
): Promise<StoredDoc> {
  const meta = (await storage.get<DocMeta>(metaKey(name))) ?? { gen: 0, snapParts: 0, first: 0, next: 0, tailBytes: 0 };
  const shed: Shedding | undefined = options.shed ? { bounds: [], deadTo: new Map(), unfoldedBytes: 0 } : undefined;
  if (meta.gen > 0) {
    // Only the parts meta names: a generation whose writing a crash cut short, before its meta,
    // is written again by the next one, maybe with fewer parts.
    const prefix = snapPrefix(name, meta.gen);
    const parts = await storage.list({ start: prefix + pad(0), end: prefix + pad(meta.snapParts) });
    if (parts.size !== meta.snapParts) throw new Error(`document ${name}: snapshot ${meta.gen} is incomplete`);
    applyStoredUpdate(doc, join([...parts.values()].map(toBytes)), origin);
  }
  shed?.bounds.push({ end: meta.first, to: clocksOf(doc), bytes: meta.snapBytes ?? 0 });
  // A log folds from where its folds end, so the records after them (an earlier instance's
  // unfolded ones) go into its first fold too, instead of waiting for a compaction.
  const unfolded = meta.unfolded ?? meta.first;
  let foldedAt: Uint8Array | undefined;
  const apply = (n: number, parts: Uint8Array[]) => {
    const update = join(parts);
    if (shed && n >= unfolded && !foldedAt) foldedAt = Y.encodeStateVector(doc);
    applyStoredUpdate(doc, update, origin);
    if (!shed) return;
    if (n < unfolded) shed.bounds.push({ end: n + 1, to: clocksOf(doc), bytes: update.byteLength });
    else shed.unfoldedBytes += update.byteLength;
  };
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
        apply(current, parts);
        parts = [];
      }
      current = n;
      parts.push(toBytes(value));
    }
    if (page.size < LOAD_PAGE_KEYS) break;
    // Exclusive of the last key read: `start` is inclusive, so step just past it.
    start = `${[...page.keys()].at(-1)}\0`;
  }
  if (parts.length > 0) apply(current, parts);
  // Parts at or past `next`: an append too big for one put (`appendUpdate`) that a crash cut
  // short. The next append writes record `next` again, maybe with fewer parts, and its record
  // would pick these up as its own; they go before anything is written.
  const leftovers = await storage.list({ start: end, end: `${updatePrefix(name)}~` });
  if (leftovers.size > 0) await deleteAll(storage, [...leftovers.keys()]);
  if (shed) return { name, meta, foldedAt: foldedAt ?? Y.encodeStateVector(doc), foldFrom: unfolded, shed };
  return { name, meta, foldedAt: Y.encodeStateVector(doc), foldFrom: meta.next };
}

/**
 * Durably appends one update record. `extra` entries (e.g. a stream's head) are written in
 * the same put when they fit, so they commit together with the update. `doc`, if given, holds
 * exactly what was applied up to this update (nothing after it yet): a log then knows where
 * its records end without reading them (`adopt`).
 */
export async function appendUpdate(
  storage: KvStorage,
  stored: StoredDoc,
  update: Uint8Array,
  extra: Record<string, unknown> = {},
  doc?: Y.Doc,
): Promise<void> {
  const { name, meta, shed } = stored;
  // Taken before the put: what the document gains meanwhile is the next record's.
  const appendedTo = shed && doc ? clocksOf(doc) : undefined;
  const n = meta.next;
  const entries: Record<string, unknown> = {};
  split(update).forEach((part, i) => {
    entries[updateKey(name, n, i)] = part;
  });
  Object.assign(entries, extra);
  const nextMeta: DocMeta = { ...meta, next: n + 1, tailBytes: meta.tailBytes + update.byteLength };
  entries[metaKey(name)] = nextMeta;
  // Over ~127 parts (~12 MB) this takes several puts, `extra` and meta in the last: a crash
  // between them leaves parts under record `n` that meta does not name (the next load deletes
  // them), and nothing `extra` says about a record that is not there.
  await putAll(storage, entries);
  stored.meta = nextMeta;
  if (!shed) return;
  shed.unfoldedBytes += update.byteLength;
  shed.appendedTo = appendedTo;
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
    (foldable(stored) ? FOLD_AFTER_RECORDS : COMPACT_AFTER_RECORDS) * slack ||
  (stored.shed?.unfoldedBytes ?? 0) >= SHED_FOLD_BYTES * slack ||
  needsFullCompaction(stored, slack);

/**
 * Whether the records since the last fold are all covered by `foldedAt`: not so for unfolded
 * records loaded from storage (their content is in the document before `foldedAt`), except in
 * a log, whose `foldedAt` is taken before them at load.
 */
const foldable = (stored: StoredDoc): boolean =>
  stored.foldedAt !== undefined && stored.foldFrom === (stored.meta.unfolded ?? stored.meta.first);

/**
 * Whether only a full compaction will do: the tail outweighs the snapshot, or folds piled up.
 * A log sheds its garbage instead, so only its fold count calls for one.
 */
const needsFullCompaction = (stored: StoredDoc, slack = 1): boolean =>
  stored.shed
    ? (stored.meta.folds ?? 0) >= SHED_MAX_FOLDS
    : (stored.meta.folds ?? 0) >= MAX_FOLDS ||
      stored.meta.tailBytes >= Math.max(COMPACT_MIN_TAIL_BYTES, stored.meta.snapBytes ?? 0) * slack;

/**
 * What `needsCompaction` asked for, at the cost of the new data when it can: the records since
 * the last fold become one fold record; a full `compact` only when the tail outweighs the
 * snapshot (its cost stays amortised), when folds piled up, or when the fold would not fit in
 * one put. A log then sheds what died (`shedDead`). Same contract as `compact`.
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
  // Records big on average (a burst's frames, with an archive's small delete between) are
  // kept as they are: few keys already, and folding them would only encode them again.
  const shed = stored.shed;
  if (shed?.appendedTo && meta.next > from && (meta.next - from) * SHED_BIG_RECORD <= shed.unfoldedBytes)
    return adopt(storage, stored, doc, later);
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
  const nextMeta: DocMeta = {
    ...meta,
    next: n + 1,
    unfolded: n + 1,
    folds: (meta.folds ?? 0) + 1,
    // A log's tail is what it stores since the snapshot (nothing decides by it).
    tailBytes: shed ? Math.max(0, meta.tailBytes - shed.unfoldedBytes) + folded.byteLength : meta.tailBytes,
  };
  entries[metaKey(name)] = nextMeta;
  await storage.put(entries);
  stored.meta = nextMeta;
  stored.foldedAt = foldsTo;
  stored.foldFrom = n + 1;
  const garbage: ListOptions[] = [{ start: updateKey(name, from, 0), end: updateKey(name, n, 0) }];
  if (shed) {
    shed.bounds.push({ end: n + 1, to: Y.decodeStateVector(foldsTo), bytes: folded.byteLength });
    shed.unfoldedBytes = 0;
    garbage.push(...(await shedDead(storage, stored, doc)));
  }
  // The folded records, now also in record `n` (and what a log shed). Losing these deletes to
  // a crash leaves them to be applied twice at load (harmless) until the next compaction (or
  // shed) deletes them.
  await collect(keysIn(storage, garbage), storage, later);
}

/**
 * A log's fold when every record since the last one is big already (a burst's frames): the
 * records stay as they are and only meta moves `unfolded` past them, so nothing is encoded
 * again. Then sheds what died, as a fold does.
 */
async function adopt(
  storage: KvStorage,
  stored: StoredDoc,
  doc: Y.Doc,
  later?: (deleting: Promise<void>) => void,
): Promise<void> {
  const { name, meta, shed } = stored;
  const to = shed?.appendedTo;
  if (!shed || !to) return;
  const nextMeta: DocMeta = { ...meta, unfolded: meta.next, folds: (meta.folds ?? 0) + 1 };
  await storage.put({ [metaKey(name)]: nextMeta });
  stored.meta = nextMeta;
  // Exactly where the records end: what the document gained since is in none of them yet.
  stored.foldedAt = Y.encodeStateVector(to);
  stored.foldFrom = meta.next;
  shed.bounds.push({ end: meta.next, to, bytes: shed.unfoldedBytes });
  shed.unfoldedBytes = 0;
  const garbage = await shedDead(storage, stored, doc);
  if (garbage.length > 0) await collect(keysIn(storage, garbage), storage, later);
}

/**
 * Whether every struct of `doc` below `to` is dead: collected (GC), or a map entry deleted
 * with its content (a log never sets such a key again; one set again since would show, being
 * no longer the map's entry for the key). Walks only what is not known dead yet (`deadTo`),
 * and notes how far each client is: dead stays dead.
 */
function deadBelow(doc: Y.Doc, to: Clocks, deadTo: Clocks): boolean {
  for (const [client, clock] of to) {
    const from = deadTo.get(client) ?? 0;
    if (clock <= from) continue;
    const structs = doc.store.clients.get(client);
    if (!structs) return false;
    for (let i = Y.findIndexSS(structs, from); i < structs.length && (structs[i] as Y.GC).id.clock < clock; i++) {
      const struct = structs[i] as Y.GC | Y.Item;
      if (struct instanceof Y.GC) continue;
      const entry =
        struct.deleted &&
        struct.content instanceof Y.ContentDeleted &&
        struct.parentSub !== null &&
        (struct.parent as Y.AbstractType<unknown>)._map.get(struct.parentSub) === struct;
      if (!entry) return false;
    }
    deadTo.set(client, clock);
  }
  return true;
}

/**
 * A Yjs update of one GC struct per client covering clocks `[0, to)`: what the live document
 * holds below `to` once it is all dead (`deadBelow`), as Yjs stores collected content (a map
 * entry deleted with its content becomes GC too; its key is never set again). Items that
 * name a struct in it as origin or parent are collected on integrate, as they are live.
 * Written by hand: Yjs encodes a document from a state vector on, never up to one.
 */
export function gcStub(to: Clocks): Uint8Array {
  const encoder = new Y.UpdateEncoderV1();
  const clients = [...to].filter(([, clock]) => clock > 0);
  encoding.writeVarUint(encoder.restEncoder, clients.length);
  for (const [client, clock] of clients) {
    encoding.writeVarUint(encoder.restEncoder, 1); // structs
    encoder.writeClient(client);
    encoding.writeVarUint(encoder.restEncoder, 0); // first clock
    encoder.writeInfo(0); // GC
    encoder.writeLen(clock);
  }
  encoding.writeVarUint(encoder.restEncoder, 0); // an empty delete set: GC is deleted already
  return encoder.toUint8Array();
}

/**
 * In a log, replaces the oldest stored pieces whose content is all dead in `doc` (the
 * snapshot, then folds, in order) by a new snapshot generation: their `gcStub`. The stub and
 * the meta that names it go in one put; the old generation and the shed records are left for
 * the caller to delete (the key ranges returned). Costs the structs that died since the last
 * shed, and a stub of a few bytes per client: never the live window.
 */
async function shedDead(storage: KvStorage, stored: StoredDoc, doc: Y.Doc): Promise<ListOptions[]> {
  const { name, meta, shed } = stored;
  if (!shed) return [];
  let last = -1;
  while (
    last + 1 < shed.bounds.length &&
    deadBelow(doc, (shed.bounds[last + 1] as Shedding["bounds"][number]).to, shed.deadTo)
  )
    last++;
  if (last < 0) return [];
  const cut = shed.bounds[last] as Shedding["bounds"][number];
  const stub = gcStub(cut.to);
  // Only the snapshot is dead: worth it only if it is not a stub already.
  if (last === 0 && (meta.gen === 0 || stub.byteLength >= (meta.snapBytes ?? Number.POSITIVE_INFINITY))) return [];
  const gen = meta.gen + 1;
  const shedBytes = shed.bounds.slice(1, last + 1).reduce((n, b) => n + b.bytes, 0);
  const nextMeta: DocMeta = {
    ...meta,
    gen,
    snapParts: 1,
    first: cut.end,
    snapBytes: stub.byteLength,
    tailBytes: Math.max(0, meta.tailBytes - shedBytes),
    // The pieces still before `unfolded`: those after the cut.
    folds: shed.bounds.length - 1 - last,
  };
  await storage.put({ [snapPrefix(name, gen) + pad(0)]: stub, [metaKey(name)]: nextMeta });
  stored.meta = nextMeta;
  shed.bounds = [{ end: cut.end, to: cut.to, bytes: stub.byteLength }, ...shed.bounds.slice(last + 1)];
  return below(name, gen, cut.end);
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
  if (stored.shed) {
    stored.shed.bounds = [{ end: nextMeta.first, to: Y.decodeStateVector(foldsTo), bytes: snapshot.byteLength }];
    stored.shed.unfoldedBytes = 0;
  }
  // Garbage: the old snapshot and the folded records.
  await collect(keysIn(storage, below(name, gen, meta.next)), storage, later);
}

/**
 * The key ranges of every snapshot generation before `gen` and every record before `record`:
 * what a new generation or a shed leaves behind. From the first ones on, not only the last: what
 * an earlier compaction's or shed's lost deletes left (a crash between its meta and them) lies
 * below them, unreachable, and is collected with the next.
 */
const below = (name: string, gen: number, record: number): ListOptions[] => [
  { start: snapPrefix(name, 0), end: snapPrefix(name, gen) },
  { start: updateKey(name, 0, 0), end: updateKey(name, record, 0) },
];

/** Lists the keys in `ranges`, for `collect`. */
const keysIn = (storage: KvStorage, ranges: ListOptions[]) => async (): Promise<string[]> =>
  (await Promise.all(ranges.map((range) => storage.list(range)))).flatMap((found) => [...found.keys()]);

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
