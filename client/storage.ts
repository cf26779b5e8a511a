/**
 * The agent's local storage: what an offline-first agent keeps so it survives a reload or a
 * crash (document updates, the outbox, stream windows, consumer positions, idempotent call
 * results, its instance id). Isomorphic: implementations live elsewhere — IndexedDB for
 * browsers (`client/storage-idb.ts`), an append-only file for Node (`crosstalk/node`), memory
 * for workerd and tests (below). A Durable-Object-hosted agent passes its own, over
 * `ctx.storage` (see README "Offline").
 *
 * Keys are strings ordered by UTF-16 code units; values are bytes. Writes happen only in
 * batches: a batch is atomic (all of it or none survives a crash) and its promise resolves
 * when it is durable. A storage that cannot take a batch (quota, closed) rejects with a
 * `CrosstalkError` (`STORAGE_FULL`, `CLOSED`) and never hangs.
 */
import { CrosstalkError } from "../protocol/index.ts";

export type StorageOp = { type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string };

export interface AgentStorage {
  get(key: string): Promise<Uint8Array | undefined>;
  /** Every entry whose key starts with `prefix`, in key order. */
  scan(prefix: string): Promise<[key: string, value: Uint8Array][]>;
  /** Applies every op or none; resolves once durable. */
  batch(ops: StorageOp[]): Promise<void>;
  close(): Promise<void>;
}

/** Storage in memory: survives a dropped socket, not a reload. For workerd agents and tests. */
export class MemoryStorage implements AgentStorage {
  readonly #entries = new Map<string, Uint8Array>();
  #closed = false;

  async get(key: string): Promise<Uint8Array | undefined> {
    this.#open();
    return this.#entries.get(key);
  }

  async scan(prefix: string): Promise<[string, Uint8Array][]> {
    this.#open();
    return [...this.#entries]
      .filter(([key]) => key.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async batch(ops: StorageOp[]): Promise<void> {
    this.#open();
    for (const op of ops) {
      if (op.type === "put") this.#entries.set(op.key, op.value.slice());
      else this.#entries.delete(op.key);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #open(): void {
    if (this.#closed) throw new CrosstalkError("CLOSED", "the agent's storage is closed");
  }
}
