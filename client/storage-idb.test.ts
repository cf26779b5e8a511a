import { IDBFactory, IDBKeyRange } from "fake-indexeddb";
import { describe, expect, it } from "vitest";
import { indexedDbName, openIndexedDbStorage } from "./storage-idb.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

describe("IndexedDbStorage (fake-indexeddb)", () => {
  it("applies batches, scans by prefix in key order, copies what it stores, and survives reopening", async () => {
    const indexedDB = new IDBFactory();
    const storage = await openIndexedDbStorage({ team: "acme", agent: "a1", indexedDB, IDBKeyRange });
    const value = bytes("1");
    await storage.batch([
      { type: "put", key: "o/2", value: bytes("2") },
      { type: "put", key: "o/1", value },
      { type: "put", key: "o0", value: bytes("after the prefix") },
      { type: "put", key: "o/\uffff", value: bytes("max") },
      { type: "put", key: "p/1", value: bytes("x") },
    ]);
    value[0] = 0;
    expect(text(await storage.get("o/1"))).toBe("1");
    expect((await storage.scan("o/")).map(([k]) => k)).toEqual(["o/1", "o/2", "o/\uffff"]);
    expect((await storage.scan("")).length).toBe(5);
    expect(await storage.scan("q")).toEqual([]);
    await storage.batch([{ type: "del", key: "o/1" }]);
    await storage.close();
    await expect(storage.get("o/2")).rejects.toMatchObject({ code: "CLOSED" });
    await expect(storage.batch([{ type: "del", key: "o/2" }])).rejects.toMatchObject({ code: "CLOSED" });

    const again = await openIndexedDbStorage({ team: "acme", agent: "a1", indexedDB, IDBKeyRange });
    expect(await again.get("o/1")).toBeUndefined();
    expect((await again.scan("o/")).map(([k, v]) => [k, text(v)])).toEqual([
      ["o/2", "2"],
      ["o/\uffff", "max"],
    ]);
    // Another agent, or another instance of this one, has a database of its own.
    const other = await openIndexedDbStorage({ team: "acme", agent: "a1", instance: "tab-2", indexedDB, IDBKeyRange });
    expect(await other.scan("")).toEqual([]);
    expect(indexedDbName({ team: "acme", agent: "a1", instance: "tab-2" })).toBe("crosstalk/acme/a1/tab-2");
  });

  it("keeps all of a batch or none of it", async () => {
    const indexedDB = new IDBFactory();
    const storage = await openIndexedDbStorage({ team: "acme", agent: "a2", indexedDB, IDBKeyRange });
    await storage.batch([{ type: "put", key: "k/1", value: bytes("kept") }]);
    // An invalid key fails the second op: the transaction aborts and the first op goes too.
    const bad = storage.batch([
      { type: "put", key: "k/2", value: bytes("lost") },
      { type: "put", key: undefined as unknown as string, value: bytes("bad key") },
    ]);
    await expect(bad).rejects.toMatchObject({ name: "CrosstalkError" });
    expect((await storage.scan("k/")).map(([k]) => k)).toEqual(["k/1"]);
  });

  it("fails with CLOSED, never hangs, when another tab deletes the database", async () => {
    const indexedDB = new IDBFactory();
    const storage = await openIndexedDbStorage({ team: "acme", agent: "a3", indexedDB, IDBKeyRange });
    await new Promise<void>((resolve, reject) => {
      const request = indexedDB.deleteDatabase(indexedDbName({ team: "acme", agent: "a3" }));
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
    });
    await expect(storage.batch([{ type: "put", key: "x", value: bytes("x") }])).rejects.toMatchObject({
      code: "CLOSED",
    });
  });
});
