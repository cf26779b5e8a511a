/**
 * The commit queue of `DocHub` (`docs.ts`) around compaction, over the in-memory store: a
 * burst is committed before the compaction it calls for, and a wait for durability asked
 * meanwhile is answered.
 */
import { describe, expect, it } from "vitest";
import { eventually } from "../testing/index.ts";
import { DocHub, ROOM } from "./docs.ts";
import { MemoryKv } from "./memory-storage.ts";

/** Over 1 MiB: one such write makes the document call for a compaction. */
const BIG = "x".repeat(1_100_000);

async function hub() {
  const fatal: unknown[] = [];
  const docs = new DocHub(new MemoryKv(), (error) => fatal.push(error));
  const doc = await docs.open("log/burst");
  const write = (key: string, value: string) => doc.ydoc.transact(() => doc.ydoc.getMap("m").set(key, value), ROOM);
  return { docs, doc, write, fatal };
}

describe("commit queue and compaction", () => {
  it("answers a wait for durability asked while the document compacts", async () => {
    const { docs, doc, write, fatal } = await hub();
    write("a", BIG);
    await docs.stored(doc);
    // The commit above calls for a compaction, which follows it: nothing new is pending, so
    // everything applied is stored and this resolves (it used to wait forever).
    let answered = false;
    void docs.stored(doc).then(() => {
      answered = true;
    });
    await eventually(() => expect(answered).toBe(true));
    await eventually(() => expect(doc.stored.meta.gen).toBe(1));
    expect(fatal).toEqual([]);
  });

  it("commits what arrives right after a commit before the compaction that commit called for", async () => {
    const { docs, doc, write, fatal } = await hub();
    write("a", BIG);
    await docs.stored(doc);
    write("b", "next frame of the burst");
    await docs.stored(doc);
    expect(doc.stored.meta.gen).toBe(0);
    await eventually(() => expect(doc.stored.meta.gen).toBe(1));
    expect(doc.ydoc.getMap("m").get("b")).toBe("next frame of the burst");
    expect(fatal).toEqual([]);
  });
});
