/**
 * The Node file storage on real files: what a reopen recovers after a torn or corrupt log,
 * snapshots, and the one-writer lock. (Recovery after a SIGKILLed agent process is in
 * test/offline.test.ts.)
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openFileStorage } from "./file-storage.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
const dirs: string[] = [];
const freshDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "crosstalk-fs-"));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Writes `n` batches of two keys each (`k<i>a`, `k<i>b`), one batch at a time, and closes. */
async function writeBatches(dir: string, n: number): Promise<void> {
  const storage = openFileStorage(dir, { compactBytes: Number.MAX_SAFE_INTEGER });
  for (let i = 0; i < n; i++) {
    await storage.batch([
      { type: "put", key: `k${String(i).padStart(4, "0")}a`, value: bytes(`value ${i} `.repeat(i % 7)) },
      { type: "put", key: `k${String(i).padStart(4, "0")}b`, value: bytes(String(i)) },
    ]);
  }
  await storage.close();
}

describe("FileStorage", () => {
  it("keeps batches, deletes and scans in key order across a reopen", async () => {
    const dir = freshDir();
    const storage = openFileStorage(dir);
    const value = bytes("1");
    await Promise.all([
      storage.batch([
        { type: "put", key: "o/2", value: bytes("2") },
        { type: "put", key: "o/1", value },
      ]),
      storage.batch([{ type: "put", key: "p/1", value: bytes("x") }]),
    ]);
    value[0] = 0;
    await storage.batch([{ type: "del", key: "p/1" }]);
    await storage.close();
    const reopened = openFileStorage(dir);
    expect(text(await reopened.get("o/1"))).toBe("1");
    expect(await reopened.get("p/1")).toBeUndefined();
    expect((await reopened.scan("o/")).map(([k, v]) => [k, text(v)])).toEqual([
      ["o/1", "1"],
      ["o/2", "2"],
    ]);
    await reopened.close();
    await expect(reopened.get("o/1")).rejects.toMatchObject({ code: "CLOSED" });
    await expect(reopened.batch([{ type: "del", key: "o/1" }])).rejects.toMatchObject({ code: "CLOSED" });
  });

  it("recovers every whole batch before a torn tail, at any truncation offset, and appends after it", async () => {
    const dir = freshDir();
    await writeBatches(dir, 60);
    const pristine = join(dir, "log.pristine");
    copyFileSync(join(dir, "log"), pristine);
    const size = statSync(pristine).size;
    let previous = -1;
    for (let trial = 0; trial < 40; trial++) {
      const cut = Math.floor(Math.random() * size);
      copyFileSync(pristine, join(dir, "log"));
      truncateSync(join(dir, "log"), cut);
      const storage = openFileStorage(dir);
      const keys = (await storage.scan("k")).map(([k]) => k);
      // Whole batches only: both keys of a batch, or neither; and a prefix of the batches.
      expect(keys.length % 2).toBe(0);
      const n = keys.length / 2;
      expect(keys).toEqual(
        Array.from({ length: n }, (_, i) => [
          `k${String(i).padStart(4, "0")}a`,
          `k${String(i).padStart(4, "0")}b`,
        ]).flat(),
      );
      expect(storage.recoveredFrom.frames).toBe(n);
      // Appending after a torn tail: the new batch survives the next reopen.
      await storage.batch([{ type: "put", key: "after", value: bytes("yes") }]);
      await storage.close();
      const again = openFileStorage(dir);
      expect(text(await again.get("after"))).toBe("yes");
      expect((await again.scan("k")).length).toBe(keys.length);
      await again.close();
      previous = Math.max(previous, n);
    }
    expect(previous).toBeGreaterThan(0);
  });

  it("stops at the first frame whose CRC is wrong and keeps everything before it", async () => {
    const dir = freshDir();
    await writeBatches(dir, 20);
    const log = readFileSync(join(dir, "log"));
    // Flip one payload byte of the 11th frame.
    let at = 0;
    for (let i = 0; i < 10; i++) at += 8 + log.readUInt32LE(at);
    log.writeUInt8(log.readUInt8(at + 10) ^ 0xff, at + 10);
    writeFileSync(join(dir, "log"), log);
    const storage = openFileStorage(dir);
    expect((await storage.scan("k")).length).toBe(20);
    expect(storage.recoveredFrom).toEqual({ frames: 10, droppedBytes: log.length - at });
    await storage.close();
  });

  it("compacts into a snapshot and recovers snapshot + log, also when the old log was not yet emptied", async () => {
    const dir = freshDir();
    const storage = openFileStorage(dir, { compactBytes: 2048 });
    for (let i = 0; i < 200; i++) {
      await storage.batch([
        { type: "put", key: `x${i % 50}`, value: bytes(`v${i}`) },
        ...(i % 10 === 9 ? [{ type: "del" as const, key: `x${i % 50}` }] : []),
      ]);
    }
    expect(statSync(join(dir, "snapshot")).size).toBeGreaterThan(0);
    expect(statSync(join(dir, "log")).size).toBeLessThan(4096);
    const expected = (await storage.scan("x")).map(([k, v]) => [k, text(v)]);
    const oldLog = readFileSync(join(dir, "log"));
    storage.compact();
    await storage.close();
    const reopened = openFileStorage(dir);
    expect((await reopened.scan("x")).map(([k, v]) => [k, text(v)])).toEqual(expected);
    await reopened.close();
    // A crash between renaming the snapshot and emptying the log replays the log over it: same entries.
    writeFileSync(join(dir, "log"), oldLog);
    const replayed = openFileStorage(dir);
    expect((await replayed.scan("x")).map(([k, v]) => [k, text(v)])).toEqual(expected);
    await replayed.close();
  });

  it("lets one writer have a directory: a second opener gets CONFLICT; a dead holder's lock is taken over", async () => {
    const dir = freshDir();
    const first = openFileStorage(dir);
    expect(() => openFileStorage(dir)).toThrow(expect.objectContaining({ code: "CONFLICT" }));
    await first.close();
    const second = openFileStorage(dir);
    await second.close();
    // A lock left by a process that no longer exists (killed with its storage open).
    const dead = spawnSync(process.execPath, ["-e", "console.log(process.pid)"]).stdout.toString().trim();
    writeFileSync(join(dir, "lock"), dead);
    const third = openFileStorage(dir);
    await third.batch([{ type: "put", key: "a", value: bytes("1") }]);
    await third.close();
  });

  it("syncs by policy: always, batch, a delay, none all keep every resolved batch", async () => {
    for (const fsync of ["always", "batch", 5, "none"] as const) {
      const dir = freshDir();
      const storage = openFileStorage(dir, { fsync });
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => storage.batch([{ type: "put", key: `k${i}`, value: bytes(String(i)) }])),
      );
      await storage.close();
      const reopened = openFileStorage(dir);
      expect((await reopened.scan("k")).length).toBe(50);
      await reopened.close();
    }
    expect(() => openFileStorage(freshDir(), { fsync: -1 })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
  });
});
