/**
 * A {@link KvStorage} in memory with Durable Object storage semantics: keys listed in sorted
 * order, an exclusive `end`, values copied on the way in and out (`structuredClone`, so a
 * caller that mutates what it stored or read changes nothing), puts all or nothing, and the
 * limits that force the room to chunk (128 KiB per value, 128 keys per put or delete, 2 KiB
 * per key) enforced with a `RangeError`, so a test passing here proves the chunking.
 *
 * Exists because the room's storage tests and the in-process test room (`crosstalk/testing`'s
 * `createTestRoom`) both need storage that behaves like the real one without workerd. Not
 * re-exported from the package entry points; the testing entry uses it.
 */
import type { KvStorage } from "./storage.ts";

/** Durable Object storage limits (Cloudflare's documented values). */
export const KV_LIMITS = {
  maxValueBytes: 128 * 1024,
  maxKeysPerCall: 128,
  maxKeyBytes: 2048,
} as const;

const encoder = new TextEncoder();

/** The stored size of a value: bytes for binary, its JSON encoding otherwise (what the limit is checked against). */
function sizeOf(value: unknown): number {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return value.byteLength;
  return encoder.encode(JSON.stringify(value)).byteLength;
}

export class MemoryKv implements KvStorage {
  /** The stored values, by key; read it to assert on what the room wrote. */
  readonly data = new Map<string, unknown>();
  /** How many successful `put` calls there were (a put is one storage write however many keys it holds). */
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
    if (keys.length > KV_LIMITS.maxKeysPerCall) {
      throw new RangeError(`put of ${keys.length} keys exceeds ${KV_LIMITS.maxKeysPerCall}`);
    }
    for (const key of keys) {
      if (encoder.encode(key).byteLength > KV_LIMITS.maxKeyBytes) throw new RangeError(`key too long: ${key}`);
      const size = sizeOf(entries[key]);
      if (size > KV_LIMITS.maxValueBytes) {
        throw new RangeError(`value of ${key} is ${size} bytes, over ${KV_LIMITS.maxValueBytes}`);
      }
    }
    // All or nothing, like a Durable Object put.
    for (const key of keys) this.data.set(key, structuredClone(entries[key]));
    this.puts++;
  }

  async delete(keys: string[]): Promise<number> {
    if (keys.length > KV_LIMITS.maxKeysPerCall) {
      throw new RangeError(`delete of ${keys.length} keys exceeds ${KV_LIMITS.maxKeysPerCall}`);
    }
    let n = 0;
    for (const key of keys) if (this.data.delete(key)) n++;
    return n;
  }

  /** The stored keys that start with `prefix`, sorted: for assertions on the layout. */
  keys(prefix = ""): string[] {
    return [...this.data.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
}
