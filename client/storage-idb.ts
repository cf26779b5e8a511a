/**
 * {@link AgentStorage} over IndexedDB, for agents in browser tabs (`connect({ persist })`).
 * One database per team and agent (per agent instance when given one: a tab's, see `tab.ts`),
 * one object store of string keys and byte values.
 *
 * Why not y-indexeddb: it writes each update in its own transaction that nothing waits for
 * (1,000 `map.set`s then a reload 50 ms later kept 62 of them). Here one batch is one
 * readwrite transaction with `durability: "strict"`, and its promise resolves on the
 * transaction's `complete`: once it resolves, a reload or a crashed tab keeps it. A quota
 * refusal rejects with `STORAGE_FULL` and nothing of the batch is kept; nothing ever hangs
 * (a database the browser closed under us, or one another tab upgrades, fails with CLOSED).
 */
import { CrosstalkError } from "../protocol/index.ts";
import type { AgentStorage, StorageOp } from "./storage.ts";

const STORE = "kv";

export type IndexedDbStorageOptions = {
  team: string;
  agent: string;
  /** An agent instance (a tab's): its own database, so two tabs never share an outbox. */
  instance?: string;
  /** The IndexedDB factory and key ranges (default: the globals; tests pass `fake-indexeddb`'s). */
  indexedDB?: IDBFactory;
  IDBKeyRange?: typeof IDBKeyRange;
};

/** The database name for a team, agent and optional instance. */
export const indexedDbName = ({
  team,
  agent,
  instance,
}: Pick<IndexedDbStorageOptions, "team" | "agent" | "instance">) =>
  ["crosstalk", team, agent, ...(instance ? [instance] : [])].map(encodeURIComponent).join("/");

/** Opens (creating if need be) the agent's database. */
export async function openIndexedDbStorage(options: IndexedDbStorageOptions): Promise<IndexedDbStorage> {
  const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!factory) throw new CrosstalkError("INVALID_ARGUMENT", "no IndexedDB here: pass options.indexedDB");
  const request = factory.open(indexedDbName(options), 1);
  request.onupgradeneeded = () => {
    if (!request.result.objectStoreNames.contains(STORE)) request.result.createObjectStore(STORE);
  };
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(storageError(request.error, "cannot open the agent's IndexedDB database"));
    request.onblocked = () =>
      reject(
        new CrosstalkError("CONFLICT", "the agent's IndexedDB database is held at an older version by another tab"),
      );
  });
  const ranges = options.IDBKeyRange ?? (globalThis as { IDBKeyRange?: typeof IDBKeyRange }).IDBKeyRange;
  if (!ranges) throw new CrosstalkError("INVALID_ARGUMENT", "no IDBKeyRange here: pass options.IDBKeyRange");
  return new IndexedDbStorage(db, ranges);
}

/** Deletes an instance's database (after its outbox was flushed). */
export function deleteIndexedDbStorage(options: IndexedDbStorageOptions): Promise<void> {
  const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!factory) return Promise.reject(new CrosstalkError("INVALID_ARGUMENT", "no IndexedDB here"));
  const request = factory.deleteDatabase(indexedDbName(options));
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve();
    request.onerror = () => reject(storageError(request.error, "cannot delete the agent's IndexedDB database"));
  });
}

export class IndexedDbStorage implements AgentStorage {
  #db: IDBDatabase | null;
  readonly #ranges: typeof IDBKeyRange;

  constructor(db: IDBDatabase, ranges: typeof IDBKeyRange) {
    this.#db = db;
    this.#ranges = ranges;
    // Another tab deletes or upgrades the database, or the browser drops it (storage cleared):
    // later calls fail with CLOSED instead of waiting on a database that will not answer.
    db.onversionchange = () => this.#drop();
    db.onclose = () => {
      this.#db = null;
    };
  }

  get(key: string): Promise<Uint8Array | undefined> {
    return this.#read((store) => store.get(key)).then((value) => (value === undefined ? undefined : bytes(value)));
  }

  async scan(prefix: string): Promise<[string, Uint8Array][]> {
    const range = prefixRange(this.#ranges, prefix);
    const store = this.#transaction("readonly").objectStore(STORE);
    // Keys and values from one transaction: one consistent snapshot, in key order.
    const [keys, values] = await Promise.all([
      requested<IDBValidKey[]>(store.getAllKeys(range)),
      requested<unknown[]>(store.getAll(range)),
    ]);
    return keys.map((key, i) => [String(key), bytes(values[i])]);
  }

  batch(ops: StorageOp[]): Promise<void> {
    let tx: IDBTransaction;
    try {
      tx = this.#transaction("readwrite");
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      // A failed request aborts the transaction: nothing of the batch is kept.
      tx.onabort = () => reject(storageError(tx.error, "the agent's IndexedDB write was aborted"));
      tx.onerror = (event) => event.preventDefault();
      try {
        const store = tx.objectStore(STORE);
        for (const op of ops) {
          if (op.type === "put") store.put(op.value.slice(), op.key);
          else store.delete(op.key);
        }
      } catch (error) {
        reject(storageError(error, "the agent's IndexedDB write failed"));
        try {
          tx.abort();
        } catch {
          // Already finished.
        }
      }
    });
  }

  async close(): Promise<void> {
    this.#drop();
  }

  #drop(): void {
    this.#db?.close();
    this.#db = null;
  }

  #transaction(mode: IDBTransactionMode): IDBTransaction {
    if (!this.#db) throw new CrosstalkError("CLOSED", "the agent's storage is closed");
    try {
      // "strict": `complete` means on disk, not merely handed to the OS (Chromium's default is relaxed).
      return this.#db.transaction(STORE, mode, { durability: "strict" });
    } catch (error) {
      throw storageError(error, "cannot start an IndexedDB transaction");
    }
  }

  async #read<T>(of: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    return requested(of(this.#transaction("readonly").objectStore(STORE)));
  }
}

function requested<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(storageError(request.error, "an IndexedDB read failed"));
  });
}

/** Stored values are Uint8Arrays; structured clone may hand back a view or a bare buffer. */
function bytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new CrosstalkError("INTERNAL", "the agent's IndexedDB database holds a value that is not bytes");
}

/** Every string key starting with `prefix`: [prefix, the next string after all of them). */
function prefixRange(ranges: typeof IDBKeyRange, prefix: string): IDBKeyRange | undefined {
  let end = prefix;
  while (end.length > 0 && end.charCodeAt(end.length - 1) === 0xffff) end = end.slice(0, -1);
  if (prefix === "") return undefined;
  if (end === "") return ranges.lowerBound(prefix);
  const upper = end.slice(0, -1) + String.fromCharCode(end.charCodeAt(end.length - 1) + 1);
  return ranges.bound(prefix, upper, false, true);
}

/** A quota refusal is `STORAGE_FULL`; a closed database `CLOSED`; anything else `INTERNAL`. */
function storageError(error: unknown, message: string): CrosstalkError {
  if (error instanceof CrosstalkError) return error;
  const name = (error as { name?: string } | null)?.name;
  const detail = (error as { message?: string } | null)?.message;
  const text = detail ? `${message}: ${detail}` : message;
  if (name === "QuotaExceededError") return new CrosstalkError("STORAGE_FULL", text);
  if (name === "InvalidStateError") return new CrosstalkError("CLOSED", text);
  return new CrosstalkError("INTERNAL", text);
}
