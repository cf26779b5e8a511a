/**
 * What an offline-first agent keeps in its {@link AgentStorage} (`connect({ persist })`), and
 * the key layout it keeps it under:
 *
 * - `meta/instance`: the agent instance id (the socket's `_pk`; minted once, then reused);
 * - `meta/n/<instance>`: the last outbox number handed out for that instance;
 * - `meta/order`: the last local outbox position;
 * - `out/<order>`: the outbox, oldest first — each entry a publish or send frame exactly as it
 *   goes on the wire, numbered `{ instance, n }` so the room dedupes a resend however old;
 * - `doc/<name>/<k>`: each open document's updates, merged per tick, compacted into one;
 * - `idem/<caller>/<key>`: outcomes of idempotent calls this agent answered (the callee's
 *   memory in `rpc.ts`), so a restarted callee answers a repeated key without running again.
 *
 * Isomorphic (the storage does the I/O). Not re-exported from the package entry point;
 * `team.ts` owns it.
 */
import * as Y from "yjs";
import { type ClientFrame, CrosstalkError, type DocName, uuidv7 } from "../protocol/index.ts";
import type { AgentStorage, StorageOp } from "./storage.ts";

export type OutboxFrame = Extract<ClientFrame, { type: "publish" | "rpc.send" }>;
export type StoredEntry = { order: number; frame: OutboxFrame; at: number; bytes: number };
/**
 * What waits to reach the room: events, messages and queued calls (each counted once, however
 * they are framed), their outbox entries' size on the wire, and when the oldest was written.
 */
export type PendingInfo = { count: number; bytes: number; oldestAt: number | null };
/** A completed idempotent call as stored: the caller and its key, the answer, when it was answered. */
export type StoredOutcome = { from: string; key: string; outcome: unknown; at: number };

const text = new TextEncoder();
const untext = new TextDecoder();
const pad = (n: number) => n.toString().padStart(16, "0");
const OUT = "out/";
const DOC = "doc/";
const IDEM = "idem/";
const idemKey = (from: string, key: string) => `${IDEM}${encodeURIComponent(from)}/${encodeURIComponent(key)}`;
/** Stored updates of one document before they are merged into one. */
const COMPACT_AFTER = 64;

type DocEntry = { stored: Map<string, Uint8Array>; queued: Uint8Array[]; next: number };

/** Where a restored document's updates come from, so they are not written back. */
export const RESTORED = Symbol("restored");

export class Persistence {
  readonly instance: string;
  readonly #storage: AgentStorage;
  #n: number;
  #order: number;
  /** Outbox entries by local order (insertion order = outbox order), their bytes, and deletions not yet written. */
  readonly #outbox = new Map<number, StoredEntry>();
  #bytes = 0;
  /** Events and messages in the outbox (a publish entry holds the events of one tick). */
  #items = 0;
  readonly #removed: StorageOp[] = [];
  /** Each document's stored updates (key → bytes, in key order), kept to restore it on every open. */
  readonly #docs = new Map<string, DocEntry>();
  readonly #inflight = new Set<Promise<unknown>>();
  /** Stored idempotent outcomes, read at open; handed to `rpc.ts` once. */
  #outcomes: StoredOutcome[];
  /** The first storage failure nobody awaited (a document write): reported by `flushed()`. */
  #failure: CrosstalkError | null = null;
  onChange: () => void = () => {};

  private constructor(
    storage: AgentStorage,
    instance: string,
    n: number,
    order: number,
    entries: StoredEntry[],
    docs: Map<string, Map<string, Uint8Array>>,
    outcomes: StoredOutcome[],
  ) {
    this.#storage = storage;
    this.#outcomes = outcomes;
    this.instance = instance;
    this.#n = n;
    this.#order = order;
    for (const e of entries.sort((a, b) => a.order - b.order)) {
      this.#outbox.set(e.order, e);
      this.#bytes += e.bytes;
      this.#items += items(e.frame);
    }
    for (const [name, stored] of docs)
      this.#docs.set(name, { stored, queued: [], next: nextIndex([...stored.keys()]) });
  }

  /** Reads what `storage` holds; the instance id is `instance`, else the stored one, else a new one (stored). */
  static async open(storage: AgentStorage, instance?: string): Promise<Persistence> {
    const stored = await storage.get("meta/instance");
    const id = instance ?? (stored ? untext.decode(stored) : uuidv7());
    if (id.length < 1 || id.length > 128)
      throw new CrosstalkError("INVALID_ARGUMENT", "instance must be 1 to 128 characters");
    if (!stored || untext.decode(stored) !== id)
      await storage.batch([{ type: "put", key: "meta/instance", value: text.encode(id) }]);
    // A counter this storage never held starts from the clock, not 1: the room keeps the highest
    // number it applied per instance, so an instance id given again with fresh storage (a
    // redeployed worker named after its host) would otherwise see its new entries dropped as
    // resends. 1,000 numbers per ms of the previous run's life stay below it.
    const n = readNumber(await storage.get(`meta/n/${id}`)) || Date.now() * 1000;
    const order = readNumber(await storage.get("meta/order"));
    const entries: StoredEntry[] = [];
    for (const [key, value] of await storage.scan(OUT)) {
      try {
        entries.push(JSON.parse(untext.decode(value)) as StoredEntry);
      } catch {
        // Written whole by an atomic batch, so unreadable means foreign: left alone rather than sent.
        void key;
      }
    }
    const docs = new Map<string, Map<string, Uint8Array>>();
    for (const [key, value] of await storage.scan(DOC)) {
      const name = key.slice(DOC.length, key.lastIndexOf("/"));
      let stored = docs.get(name);
      if (!stored) {
        stored = new Map();
        docs.set(name, stored);
      }
      stored.set(key, value);
    }
    const outcomes: StoredOutcome[] = [];
    for (const [, value] of await storage.scan(IDEM)) {
      try {
        outcomes.push(JSON.parse(untext.decode(value)) as StoredOutcome);
      } catch {
        // Written whole by an atomic batch: unreadable means foreign, and forgetting is safe.
      }
    }
    return new Persistence(storage, id, n, order, entries, docs, outcomes);
  }

  /** Outbox entries a previous run left, oldest first. */
  restored(kind: OutboxFrame["type"]): StoredEntry[] {
    return [...this.#outbox.values()].filter((e) => e.frame.type === kind).sort((a, b) => a.order - b.order);
  }

  /**
   * Numbers `frame` for this instance, gives it its outbox ref, and writes it durably. The
   * frame is changed in place (`ref`, `outbox`) before this returns: send it once the promise
   * resolves. Rejects with the storage's error (STORAGE_FULL) and leaves nothing behind.
   */
  /**
   * `add`, with the bookkeeping both outboxes (events, messages) share: `out` waits in
   * `pending` under the frame's new ref while it is written; once durable, `durable` runs if it
   * is still there (an answer may have come first); if the write fails it leaves and `failed`
   * gets the typed error.
   */
  enqueue<T extends { durable: boolean }>(
    frame: OutboxFrame,
    pending: Map<string, T>,
    out: T,
    durable: () => void,
    failed: (error: CrosstalkError) => void,
  ): void {
    const written = this.add(frame);
    const ref = frame.ref;
    pending.set(ref, out);
    written.then(
      () => {
        out.durable = true;
        if (pending.get(ref) === out) durable();
      },
      (error: unknown) => {
        if (pending.get(ref) === out) pending.delete(ref);
        failed(storageFailure(error));
      },
    );
  }

  add(frame: OutboxFrame): Promise<StoredEntry> {
    const order = ++this.#order;
    const n = ++this.#n;
    frame.ref = `o${order}`;
    frame.outbox = { instance: this.instance, n };
    const json = JSON.stringify(frame);
    const entry: StoredEntry = { order, frame, at: Date.now(), bytes: json.length };
    this.#outbox.set(order, entry);
    this.#bytes += entry.bytes;
    this.#items += items(frame);
    this.onChange();
    const written = this.#storage
      .batch([
        { type: "put", key: OUT + pad(order), value: text.encode(JSON.stringify(entry)) },
        { type: "put", key: `meta/n/${this.instance}`, value: text.encode(String(n)) },
        { type: "put", key: "meta/order", value: text.encode(String(order)) },
      ])
      .then(
        () => entry,
        (error: unknown) => {
          if (this.#outbox.delete(order)) {
            this.#bytes -= entry.bytes;
            this.#items -= items(frame);
          }
          this.onChange();
          throw storageFailure(error);
        },
      );
    return this.#track(written);
  }

  /** The idempotent outcomes a previous run stored (oldest first); empty after the first call. */
  takeOutcomes(): StoredOutcome[] {
    const outcomes = this.#outcomes.sort((a, b) => a.at - b.at);
    this.#outcomes = [];
    return outcomes;
  }

  /** Stores a completed idempotent call's outcome; resolves when durable. */
  storeOutcome(stored: StoredOutcome): Promise<void> {
    const value = text.encode(JSON.stringify(stored));
    return this.#track(this.#storage.batch([{ type: "put", key: idemKey(stored.from, stored.key), value }]));
  }

  /** Forgets outcomes past the callee's window or cap. */
  forgetOutcomes(calls: { from: string; key: string }[]): void {
    if (calls.length === 0) return;
    const ops: StorageOp[] = calls.map((c) => ({ type: "del", key: idemKey(c.from, c.key) }));
    this.#track(this.#storage.batch(ops)).catch((error: unknown) => {
      this.#failure ??= storageFailure(error);
    });
  }

  /** The room has applied (or refused) the entry with ref `ref`: it leaves the outbox. */
  remove(ref: string): void {
    const order = Number(ref.slice(1));
    const entry = this.#outbox.get(order);
    if (!ref.startsWith("o") || !entry) return;
    this.#outbox.delete(order);
    this.#bytes -= entry.bytes;
    this.#items -= items(entry.frame);
    this.onChange();
    // The acks of one tick leave the outbox in one batch.
    this.#removed.push({ type: "del", key: OUT + pad(order) });
    if (this.#removed.length > 1) return;
    queueMicrotask(() => {
      const ops = this.#removed.splice(0);
      this.#track(this.#storage.batch(ops)).catch((error: unknown) => {
        this.#failure ??= storageFailure(error);
      });
    });
  }

  /** The outbox's events and messages, bytes and oldest write (`team.pending()` adds what is not stored). */
  pending(): PendingInfo {
    // Entries are added in order and `at` never decreases: the first one is the oldest.
    const first = this.#outbox.values().next();
    return { count: this.#items, bytes: this.#bytes, oldestAt: first.done ? null : first.value.at };
  }

  /**
   * Keeps `doc`'s updates (its own and the room's), merged per tick. With `restore`, what was
   * stored is applied first; without (a copy the room refused, starting over), it is dropped.
   */
  attachDoc(name: DocName, doc: Y.Doc, restore = true): void {
    let state = this.#docs.get(name);
    if (!state) {
      state = { stored: new Map(), queued: [], next: 0 };
      this.#docs.set(name, state);
    }
    const entry = state;
    if (restore) for (const update of entry.stored.values()) Y.applyUpdate(doc, update, RESTORED);
    else if (entry.stored.size > 0) {
      const ops: StorageOp[] = [...entry.stored.keys()].map((key) => ({ type: "del", key }));
      entry.stored = new Map();
      this.#track(this.#storage.batch(ops)).catch((error: unknown) => {
        this.#failure ??= storageFailure(error);
      });
    }
    doc.on("update", (update: Uint8Array, origin: unknown) => {
      if (origin === RESTORED) return;
      entry.queued.push(update);
      if (entry.queued.length > 1) return;
      queueMicrotask(() => this.#writeDoc(name, doc, entry));
    });
  }

  #writeDoc(name: string, doc: Y.Doc, entry: DocEntry): void {
    const updates = entry.queued.splice(0);
    if (updates.length === 0) return;
    const ops: StorageOp[] = [];
    const key = `${DOC}${name}/${pad(entry.next++)}`;
    if (entry.stored.size >= COMPACT_AFTER) {
      // The whole document in one entry replaces every stored update.
      const whole = Y.encodeStateAsUpdate(doc);
      ops.push({ type: "put", key, value: whole });
      for (const old of entry.stored.keys()) ops.push({ type: "del", key: old });
      entry.stored = new Map([[key, whole]]);
    } else {
      const merged = updates.length === 1 ? (updates[0] as Uint8Array) : Y.mergeUpdates(updates);
      ops.push({ type: "put", key, value: merged });
      entry.stored.set(key, merged);
    }
    this.#track(this.#storage.batch(ops)).catch((error: unknown) => {
      this.#failure ??= storageFailure(error);
    });
  }

  /** Resolves once everything written so far is durable; rejects with the first storage failure (STORAGE_FULL). */
  async flushed(): Promise<void> {
    // Document updates of this tick are written in a microtask: let them start.
    await Promise.resolve();
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    if (this.#failure) throw this.#failure;
  }

  close(): Promise<void> {
    return this.#storage.close();
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inflight.add(promise);
    const done = () => this.#inflight.delete(promise);
    promise.then(done, done);
    return promise;
  }
}

/** A storage failure as the typed error callers see (the storage's own, e.g. STORAGE_FULL, as is). */
export function storageFailure(error: unknown): CrosstalkError {
  if (error instanceof CrosstalkError) return error;
  return new CrosstalkError(
    "INTERNAL",
    `the agent's storage failed: ${error instanceof Error ? error.message : String(error)}`,
  );
}

/** What one outbox entry counts for in `pending().count`: its events, or one message. */
function items(frame: OutboxFrame): number {
  return frame.type === "publish" ? frame.events.length : 1;
}

function readNumber(bytes: Uint8Array | undefined): number {
  const n = bytes ? Number(untext.decode(bytes)) : 0;
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function nextIndex(keys: string[]): number {
  const last = keys.at(-1);
  return last ? Number(last.slice(last.lastIndexOf("/") + 1)) + 1 : 0;
}
