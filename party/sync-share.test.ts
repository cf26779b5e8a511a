import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it, vi } from "vitest";
import * as Y from "yjs";
import { SHARE_MS, step2Frame, step2Of } from "./sync-share.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

describe("step 2 frames", () => {
  it("are the frame of Yjs's own update, whole or from a state vector, first or sized after an earlier one", () => {
    const doc = new Y.Doc();
    const list = doc.getArray<unknown>("list");
    const other = new Y.Doc();
    for (let round = 0; round < 6; round++) {
      // Grows past the last size (the hint is too small), then far less is asked for.
      doc.transact(() => {
        for (let i = 0; i < 200 * (round + 1); i++) list.push([{ round, i, note: "x".repeat(i % 50) }]);
      });
      const empty = Y.encodeStateVector(new Y.Doc());
      expect(step2Frame("state/a", doc, empty)).toEqual(step2Of("state/a", Y.encodeStateAsUpdate(doc, empty)));
      const sv = Y.encodeStateVector(other);
      expect(step2Frame("state/a", doc, sv)).toEqual(step2Of("state/a", Y.encodeStateAsUpdate(doc, sv)));
      Y.applyUpdate(other, Y.encodeStateAsUpdate(doc));
      if (round % 2 === 0) list.delete(0, 10);
    }
  });

  it("carry a document's pending structs as Yjs does", () => {
    const source = new Y.Doc();
    source.getArray("a").push([1]);
    const first = Y.encodeStateAsUpdate(source);
    source.getArray("a").push([2]);
    const second = Y.encodeStateAsUpdate(source, Y.encodeStateVectorFromUpdate(first));
    const doc = new Y.Doc();
    Y.applyUpdate(doc, second); // its dependency is missing: pending
    expect(doc.store.pendingStructs).not.toBeNull();
    const empty = Y.encodeStateVector(new Y.Doc());
    expect(step2Frame("state/b", doc, empty)).toEqual(step2Of("state/b", Y.encodeStateAsUpdate(doc, empty)));
  });
});

describe("a shared step 2 frame", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is not kept once its document changed and its time is up (the document's listener does not hold it)", async () => {
    vi.useFakeTimers();
    const doc = new Y.Doc();
    doc.getArray("list").push(["x".repeat(10_000)]);
    const empty = Y.encodeStateVector(new Y.Doc());
    // Made in a function of its own, so no local here holds the frame.
    const ref = ((): WeakRef<Uint8Array> => new WeakRef(step2Frame("state/c", doc, empty)))();
    expect(step2Frame("state/c", doc, empty)).toBe(ref.deref());
    doc.getArray("list").push(["y"]);
    vi.advanceTimersByTime(SHARE_MS);
    // A WeakRef keeps its target until the current job ends.
    vi.useRealTimers();
    await new Promise((resolve) => setTimeout(resolve, 0));
    gc();
    expect(ref.deref()).toBeUndefined();
  });
});
