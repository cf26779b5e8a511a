import { describe, expect, it } from "vitest";
import { MemoryStorage } from "./storage.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("MemoryStorage", () => {
  it("applies batches, scans by prefix in key order, and copies what it stores", async () => {
    const storage = new MemoryStorage();
    const value = bytes("1");
    await storage.batch([
      { type: "put", key: "o/2", value: bytes("2") },
      { type: "put", key: "o/1", value },
      { type: "put", key: "p/1", value: bytes("x") },
    ]);
    value[0] = 0;
    expect(await storage.get("o/1")).toEqual(bytes("1"));
    expect((await storage.scan("o/")).map(([k]) => k)).toEqual(["o/1", "o/2"]);
    await storage.batch([{ type: "del", key: "o/1" }]);
    expect(await storage.get("o/1")).toBeUndefined();
    await storage.close();
    await expect(storage.get("o/2")).rejects.toMatchObject({ code: "CLOSED" });
  });
});
