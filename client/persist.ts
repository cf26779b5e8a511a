/**
 * What an offline-first agent keeps in its {@link AgentStorage} (`connect({ persist })`), and
 * the key layout it keeps it under:
 *
 * - `meta/instance`: the agent instance id (the socket's `_pk`; minted once, then reused);
 * - `meta/n/<instance>`: the last outbox number handed out for that instance;
 * - `meta/order`: the last local outbox position;
 * - `out/<order>`: the outbox, oldest first — each entry a publish or send frame exactly as it
 *   goes on the wire, numbered `{ instance, n }` so the room dedupes a resend however old;
 * - `doc/<name>/<k>`: each open document's updates, merged per tick, compacted into one.
 *
 * Isomorphic (the storage does the I/O). Not re-exported from the package entry point;
 * `team.ts` owns it.
 */
import * as Y from "yjs";
import { type ClientFrame, CrosstalkError, type DocName, uuidv7 } from "../protocol/index.ts";
import type { AgentStorage, StorageOp } from "./storage.ts";

export type OutboxFrame = Extract<ClientFrame, { type: "publish" | "rpc.send" }>;
export type StoredEntry = { order: number; frame: OutboxFrame; at: number; bytes: number };
/** What waits to reach the room: entries, their size on the wire, and when the oldest was written. */
export type PendingInfo = { count: number; bytes: number; oldestAt: number | null };

const text = new TextEncoder();
const untext = new TextDecoder();
const pad = (n: number) => n.toString().padStart(16, "0");
const OUT = "out/";
const DOC = "doc/";
/** Stored updates of one document before they are merged into one. */
const COMPACT_AFTER = 64;

/** Where a restored document's updates come from, so they are not written back. */
export const RESTORED = Symbol("restored");

export class Persistence {
  readonly instance: string;
  readonly #storage: AgentStorage;
  #n: number;
  #order: number;
  readonly #outbox = new Map<number, StoredEntry>();
  readonly #docs = new Map<string, { keys: string[]; queued: Uint8Array[]; next: number }>();
  readonly #inflight = new Set<Promise<unknown>>();
  /** The first storage failure nobody awaited (a document write): reported by `flushed()`. */
  #failure: CrosstalkError | null = null;
  onChange: () => void = () => {};

  private constructor(
    storage: AgentStorage,
    instance: string,
    n: number,
    order: number,
    entries: StoredEntry[],
    docs: Map<string, string[]>,
    readonly restoredDocs: Map<string, Uint8Array[]>,
  ) {
    this.#storage = storage;
    this.instance = instance;
    this.#n = n;
    this.#order = order;
    for (const e of entries) this.#outbox.set(e.order, e);
    for (const [name, keys] of docs) this.#docs.set(name, { keys, queued: [], next: nextIndex(keys) });
  }

  /** Reads what `storage` holds; the instance id is `instance`, else the stored one, else a new one (stored). */
  static async open(storage: AgentStorage, instance?: string): Promise<Persistence> {
    const stored = await storage.get("meta/instance");
    const id = instance ?? (stored ? untext.decode(stored) : uuidv7());
    if (id.length < 1 || id.length > 128)
      throw new CrosstalkError("INVALID_ARGUMENT", "instance must be 1 to 128 characters");
    if (!stored || untext.decode(stored) !== id)
      await storage.batch([{ type: "put", key: "meta/instance", value: text.encode(id) }]);
    const n = readNumber(await storage.get(`meta/n/${id}`));
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
    const docKeys = new Map<string, string[]>();
    const restored = new Map<string, Uint8Array[]>();
    for (const [key, value] of await storage.scan(DOC)) {
      const name = key.slice(DOC.length, key.lastIndexOf("/"));
      docKeys.set(name, [...(docKeys.get(name) ?? []), key]);
      restored.set(name, [...(restored.get(name) ?? []), value]);
    }
    return new Persistence(storage, id, n, order, entries, docKeys, restored);
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
  add(frame: OutboxFrame): Promise<StoredEntry> {
    const order = ++this.#order;
    const n = ++this.#n;
    frame.ref = `o${order}`;
    frame.outbox = { instance: this.instance, n };
    const json = JSON.stringify(frame);
    const entry: StoredEntry = { order, frame, at: Date.now(), bytes: json.length };
    this.#outbox.set(order, entry);
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
          this.#outbox.delete(order);
          this.onChange();
          throw storageFailure(error);
        },
      );
    return this.#track(written);
  }

  /** The room has applied (or refused) the entry with ref `ref`: it leaves the outbox. */
  remove(ref: string): void {
    const order = Number(ref.slice(1));
    if (!ref.startsWith("o") || !this.#outbox.delete(order)) return;
    this.onChange();
    this.#track(this.#storage.batch([{ type: "del", key: OUT + pad(order) }])).catch((error: unknown) => {
      this.#failure ??= storageFailure(error);
    });
  }

  pending(): PendingInfo {
    let bytes = 0;
    let oldestAt: number | null = null;
    for (const e of this.#outbox.values()) {
      bytes += e.bytes;
      if (oldestAt === null || e.at < oldestAt) oldestAt = e.at;
    }
    return { count: this.#outbox.size, bytes, oldestAt };
  }

  /** Keeps `doc`'s updates (its own and the room's), merged per tick, restoring what was stored. */
  attachDoc(name: DocName, doc: Y.Doc): void {
    const restored = this.restoredDocs.get(name);
    if (restored) {
      this.restoredDocs.delete(name);
      for (const update of restored) Y.applyUpdate(doc, update, RESTORED);
    }
    let state = this.#docs.get(name);
    if (!state) {
      state = { keys: [], queued: [], next: 0 };
      this.#docs.set(name, state);
    }
    const entry = state;
    doc.on("update", (update: Uint8Array, origin: unknown) => {
      if (origin === RESTORED) return;
      entry.queued.push(update);
      if (entry.queued.length > 1) return;
      queueMicrotask(() => this.#writeDoc(name, doc, entry));
    });
  }

  #writeDoc(name: string, doc: Y.Doc, entry: { keys: string[]; queued: Uint8Array[]; next: number }): void {
    const updates = entry.queued.splice(0);
    if (updates.length === 0) return;
    const ops: StorageOp[] = [];
    const key = `${DOC}${name}/${pad(entry.next++)}`;
    if (entry.keys.length >= COMPACT_AFTER) {
      // The whole document in one entry replaces every stored update.
      ops.push({ type: "put", key, value: Y.encodeStateAsUpdate(doc) });
      for (const old of entry.keys) ops.push({ type: "del", key: old });
      entry.keys = [key];
    } else {
      ops.push({
        type: "put",
        key,
        value: updates.length === 1 ? (updates[0] as Uint8Array) : Y.mergeUpdates(updates),
      });
      entry.keys.push(key);
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

function readNumber(bytes: Uint8Array | undefined): number {
  const n = bytes ? Number(untext.decode(bytes)) : 0;
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

function nextIndex(keys: string[]): number {
  const last = keys.at(-1);
  return last ? Number(last.slice(last.lastIndexOf("/") + 1)) + 1 : 0;
}
