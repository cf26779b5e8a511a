/**
 * An in-memory {@link KvStorage} with Durable Object storage semantics and limits (128 KiB
 * per value, 128 keys per put or delete, sorted lists with an exclusive `end`, copies on the
 * way in and out), so a room driven by it in-process behaves as on the platform. For tests:
 * `storage.test.ts` proves the chunking against it, the authorization matrix runs whole
 * rooms on it. Not used by the deployed room.
 */
import type { KvStorage } from "./storage.ts";

export const MAX_VALUE_BYTES = 128 * 1024;
export const MAX_KEYS = 128;
export const MAX_KEY_BYTES = 2048;

const sizeOf = (value: unknown): number => {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return value.byteLength;
  return new TextEncoder().encode(JSON.stringify(value)).byteLength;
};

/** A Map with Durable Object storage semantics: sorted list, exclusive `end`, copies on the way in and out. */
export class MemoryKv implements KvStorage {
  readonly data = new Map<string, unknown>();
  puts = 0;

  async get<T = unknown>(key: string): Promise<T | undefined> {
    return this.data.has(key) ? (structuredClone(this.data.get(key)) as T) : undefined;
  }

  async list<T = unknown>(options: {
    prefix?: string;
    start?: string;
    end?: string;
    limit?: number;
    reverse?: boolean;
  }): Promise<Map<string, T>> {
    let keys = [...this.data.keys()].sort().filter((k) => {
      if (options.prefix !== undefined && !k.startsWith(options.prefix)) return false;
      if (options.start !== undefined && k < options.start) return false;
      if (options.end !== undefined && k >= options.end) return false;
      return true;
    });
    if (options.reverse) keys.reverse();
    if (options.limit !== undefined) keys = keys.slice(0, options.limit);
    return new Map(keys.map((k) => [k, structuredClone(this.data.get(k)) as T]));
  }

  async put<T>(entries: Record<string, T>): Promise<void> {
    const keys = Object.keys(entries);
    if (keys.length > MAX_KEYS) throw new RangeError(`put of ${keys.length} keys exceeds ${MAX_KEYS}`);
    for (const key of keys) {
      if (new TextEncoder().encode(key).byteLength > MAX_KEY_BYTES) throw new RangeError(`key too long: ${key}`);
      const size = sizeOf(entries[key]);
      if (size > MAX_VALUE_BYTES) throw new RangeError(`value of ${key} is ${size} bytes, over ${MAX_VALUE_BYTES}`);
    }
    // All or nothing, like a Durable Object put.
    for (const key of keys) this.data.set(key, structuredClone(entries[key]));
    this.puts++;
  }

  async delete(keys: string[]): Promise<number> {
    if (keys.length > MAX_KEYS) throw new RangeError(`delete of ${keys.length} keys exceeds ${MAX_KEYS}`);
    let n = 0;
    for (const key of keys) if (this.data.delete(key)) n++;
    return n;
  }

  keysOf(doc: string): string[] {
    return [...this.data.keys()].filter((k) => k.startsWith(`doc|${doc}|`)).sort();
  }
}
