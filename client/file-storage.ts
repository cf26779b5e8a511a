/**
 * The agent's storage as files, for Node (`crosstalk/node` re-exports it; Node-only, so the
 * core never imports it). One directory per agent instance:
 *
 * - `log`: an append-only log of batches, each one frame `[length u32][crc32 u32][payload]`
 *   written with one `fs.writeSync` (a batch is all or nothing: a torn or corrupt frame ends
 *   recovery, and everything before it is kept);
 * - `snapshot`: every entry at the time of the last compaction (temp file → fsync → rename →
 *   fsync the directory), after which the log starts again empty;
 * - `lock`: one writer per directory. A second opener gets CONFLICT while the holder's process
 *   lives; a lock left by a killed process is taken over.
 *
 * Group commit: batches handed in during one tick are written together and share one
 * `fdatasync` (`fsync: "batch"`, the default); `"always"` syncs every batch on its own, a
 * number waits that many ms to share a sync with more batches, `"none"` leaves it to the OS
 * (survives a killed process, not a power cut). A batch's promise resolves after its sync.
 * A full disk or quota (ENOSPC, EDQUOT) rejects with STORAGE_FULL and leaves the log as it was.
 *
 * All entries are also held in memory (an agent's local state is its documents, outbox and
 * a few windows, not a database), so `get` and `scan` never touch the disk.
 */
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import { CrosstalkError } from "../protocol/index.ts";
import type { AgentStorage, StorageOp } from "./storage.ts";

export type FsyncPolicy = "always" | "batch" | "none" | number;

export type FileStorageOptions = {
  /** When a batch counts as durable: see the module comment. Default "batch". */
  fsync?: FsyncPolicy;
  /** Compact (snapshot + empty log) once the log is larger than this and than the snapshot. Default 4 MB. */
  compactBytes?: number;
};

const HEADER = 8;
/** Refuses a frame claiming more than this: a corrupt length must not make recovery allocate gigabytes. */
const MAX_FRAME = 256 * 1024 * 1024;

type Waiting = { ops: StorageOp[]; resolve: () => void; reject: (error: unknown) => void };

/** Opens (creating if needed) the storage in `dir`; CONFLICT if another live process holds it. */
export function openFileStorage(dir: string, options: FileStorageOptions = {}): FileStorage {
  return new FileStorage(dir, options);
}

export class FileStorage implements AgentStorage {
  readonly dir: string;
  readonly #entries = new Map<string, Uint8Array>();
  readonly #policy: FsyncPolicy;
  readonly #compactBytes: number;
  #log: number;
  #logBytes = 0;
  #snapshotBytes = 0;
  #waiting: Waiting[] = [];
  #scheduled = false;
  #closed = false;
  /** Bytes dropped from the log's end at open: a torn or corrupt tail (for tests and logs). */
  readonly recoveredFrom: { frames: number; droppedBytes: number };

  constructor(dir: string, options: FileStorageOptions = {}) {
    this.dir = dir;
    this.#policy = options.fsync ?? "batch";
    this.#compactBytes = options.compactBytes ?? 4 * 1024 * 1024;
    if (typeof this.#policy === "number" && !(this.#policy >= 0))
      throw new CrosstalkError("INVALID_ARGUMENT", "fsync must be always, batch, none or a delay in ms");
    mkdirSync(dir, { recursive: true });
    lock(dir);
    try {
      const snapshot = join(dir, "snapshot");
      if (existsSync(snapshot)) {
        const bytes = readFileSync(snapshot);
        const frames = readFrames(bytes);
        if (frames.frames.length !== 1 || frames.end !== bytes.length)
          throw new CrosstalkError("INTERNAL", `${snapshot} is corrupt (it is only ever renamed into place whole)`);
        this.#apply(frames.frames[0] as Uint8Array);
        this.#snapshotBytes = bytes.length;
      }
      const logPath = join(dir, "log");
      const bytes = existsSync(logPath) ? readFileSync(logPath) : Buffer.alloc(0);
      const { frames, end } = readFrames(bytes);
      for (const frame of frames) this.#apply(frame);
      this.#log = openSync(logPath, "a+");
      // A torn or corrupt tail is cut off, so what is appended next follows the last good frame.
      if (end < bytes.length) {
        ftruncateSync(this.#log, end);
        fsyncSync(this.#log);
      }
      this.#logBytes = end;
      this.recoveredFrom = { frames: frames.length, droppedBytes: bytes.length - end };
    } catch (error) {
      unlock(dir);
      throw error;
    }
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    this.#open();
    return this.#entries.get(key)?.slice();
  }

  async scan(prefix: string): Promise<[string, Uint8Array][]> {
    this.#open();
    const found: [string, Uint8Array][] = [];
    for (const [key, value] of this.#entries) if (key.startsWith(prefix)) found.push([key, value.slice()]);
    return found.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  batch(ops: StorageOp[]): Promise<void> {
    if (this.#closed) return Promise.reject(new CrosstalkError("CLOSED", "the agent's storage is closed"));
    if (ops.length === 0) return Promise.resolve();
    // Copied now: the caller may reuse its buffers once the call returns.
    const copy = ops.map((op) => (op.type === "put" ? { ...op, value: op.value.slice() } : op));
    return new Promise((resolve, reject) => {
      this.#waiting.push({ ops: copy, resolve, reject });
      if (this.#policy === "always") return this.#commit();
      if (this.#scheduled) return;
      this.#scheduled = true;
      if (typeof this.#policy === "number" && this.#policy > 0) setTimeout(() => this.#commit(), this.#policy);
      else setImmediate(() => this.#commit());
    });
  }

  /** Writes every waiting batch (one frame each, one write), syncs once, then applies and resolves. */
  #commit(): void {
    this.#scheduled = false;
    const group = this.#waiting;
    this.#waiting = [];
    if (group.length === 0) return;
    if (this.#closed) {
      for (const w of group) w.reject(new CrosstalkError("CLOSED", "the agent's storage is closed"));
      return;
    }
    const frames = group.map((w) => frame(encodeOps(w.ops)));
    const bytes = Buffer.concat(frames);
    try {
      writeAll(this.#log, bytes);
      if (this.#policy !== "none") fdatasyncSync(this.#log);
    } catch (error) {
      // Nothing of this group may survive half-written: cut the log back to where it was.
      try {
        ftruncateSync(this.#log, this.#logBytes);
      } catch {
        // The next open stops at the first bad frame anyway.
      }
      const failure = storageError(error);
      for (const w of group) w.reject(failure);
      return;
    }
    this.#logBytes += bytes.length;
    for (const w of group) {
      this.#applyOps(w.ops);
      w.resolve();
    }
    if (this.#logBytes > this.#compactBytes && this.#logBytes > this.#snapshotBytes) {
      try {
        this.compact();
      } catch {
        // The log still holds everything; compaction is tried again after the next commit.
      }
    }
  }

  /** Writes every entry to a new snapshot and starts the log again empty. */
  compact(): void {
    this.#open();
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, this.#entries.size);
    for (const [key, value] of this.#entries) {
      encoding.writeVarUint(encoder, 0);
      encoding.writeVarString(encoder, key);
      encoding.writeVarUint8Array(encoder, value);
    }
    const bytes = frame(encoding.toUint8Array(encoder));
    const tmp = join(this.dir, "snapshot.tmp");
    try {
      const fd = openSync(tmp, "w");
      try {
        writeAll(fd, bytes);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, join(this.dir, "snapshot"));
      syncDir(this.dir);
    } catch (error) {
      throw storageError(error);
    }
    // A crash before this line replays the old log over the new snapshot: same result.
    ftruncateSync(this.#log, 0);
    fsyncSync(this.#log);
    this.#logBytes = 0;
    this.#snapshotBytes = bytes.length;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#commit();
    this.#closed = true;
    closeSync(this.#log);
    unlock(this.dir);
  }

  #open(): void {
    if (this.#closed) throw new CrosstalkError("CLOSED", "the agent's storage is closed");
  }

  #apply(payload: Uint8Array): void {
    this.#applyOps(decodeOps(payload));
  }

  #applyOps(ops: StorageOp[]): void {
    for (const op of ops) {
      if (op.type === "put") this.#entries.set(op.key, op.value);
      else this.#entries.delete(op.key);
    }
  }
}

function frame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out.writeUInt32LE(payload.length, 0);
  out.writeUInt32LE(crc32(payload), 4);
  out.set(payload, HEADER);
  return out;
}

/** The frames of `bytes` up to the first torn or corrupt one, and where that one starts. */
function readFrames(bytes: Uint8Array): { frames: Uint8Array[]; end: number } {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames: Uint8Array[] = [];
  let at = 0;
  while (at + HEADER <= view.length) {
    const length = view.readUInt32LE(at);
    if (length > MAX_FRAME || at + HEADER + length > view.length) break;
    const payload = view.subarray(at + HEADER, at + HEADER + length);
    if (crc32(payload) !== view.readUInt32LE(at + 4)) break;
    try {
      decodeOps(payload);
    } catch {
      break;
    }
    frames.push(payload);
    at += HEADER + length;
  }
  return { frames, end: at };
}

function encodeOps(ops: StorageOp[]): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, ops.length);
  for (const op of ops) {
    encoding.writeVarUint(encoder, op.type === "put" ? 0 : 1);
    encoding.writeVarString(encoder, op.key);
    if (op.type === "put") encoding.writeVarUint8Array(encoder, op.value);
  }
  return encoding.toUint8Array(encoder);
}

function decodeOps(payload: Uint8Array): StorageOp[] {
  const decoder = decoding.createDecoder(payload);
  const ops: StorageOp[] = [];
  for (let n = decoding.readVarUint(decoder); n > 0; n--) {
    const kind = decoding.readVarUint(decoder);
    const key = decoding.readVarString(decoder);
    if (kind === 0) ops.push({ type: "put", key, value: decoding.readVarUint8Array(decoder).slice() });
    else if (kind === 1) ops.push({ type: "del", key });
    else throw new Error(`unknown op ${kind}`);
  }
  return ops;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function storageError(error: unknown): CrosstalkError {
  const code = (error as { code?: unknown }).code;
  if (code === "ENOSPC" || code === "EDQUOT")
    return new CrosstalkError("STORAGE_FULL", `the agent's storage is full (${code})`);
  return new CrosstalkError("INTERNAL", `the agent's storage failed: ${(error as Error).message}`);
}

const lockPath = (dir: string) => join(dir, "lock");

/** Takes `dir`'s lock: CONFLICT while a live process holds it; a dead holder's lock is taken over. */
function lock(dir: string): void {
  const path = lockPath(dir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: "wx" });
      return;
    } catch (error) {
      if ((error as { code?: unknown }).code !== "EEXIST") throw storageError(error);
    }
    const holder = Number(readFileSync(path, "utf8"));
    if (Number.isInteger(holder) && holder > 0 && alive(holder))
      throw new CrosstalkError("CONFLICT", `${dir} is in use by process ${holder} (one writer per directory)`, {
        pid: holder,
      });
    unlinkSync(path);
  }
  throw new CrosstalkError("CONFLICT", `${dir}: could not take the lock`);
}

function unlock(dir: string): void {
  try {
    unlinkSync(lockPath(dir));
  } catch {
    // Already gone.
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: unknown }).code === "EPERM";
  }
}
