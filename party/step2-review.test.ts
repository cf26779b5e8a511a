/** Review: `step2Frame` answers exactly as Yjs's own encoder wrapped by `step2Of`, for many documents and state vectors. */
import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { seededRandom } from "../test/harness.ts";
import { step2Frame, step2Of } from "./sync-share.ts";

describe("review: step2Frame is Yjs's own answer", () => {
  it("for growing, shrinking, deleted, pending and empty documents and any state vector", () => {
    const r = seededRandom(7);
    const doc = new Y.Doc({ gc: true });
    const other = new Y.Doc();
    const empty = new Y.Doc();
    expect(step2Frame("log/e", empty, new Uint8Array([0]))).toEqual(step2Of("log/e", Y.encodeStateAsUpdate(empty)));
    for (let step = 0; step < 40; step++) {
      const map = doc.getMap("segments");
      const k = String(Math.floor(r() * 20));
      if (r() < 0.3) map.delete(k);
      else {
        const arr = (map.get(k) as Y.Array<unknown>) ?? new Y.Array();
        if (!map.has(k)) map.set(k, arr);
        arr.push(
          Array.from({ length: Math.floor(r() * 40) }, (_, i) => ({
            i,
            s: "x".repeat(Math.floor(r() * 300)),
            u: "é😀",
          })),
        );
      }
      if (r() < 0.2) Y.applyUpdate(other, Y.encodeStateAsUpdate(doc));
      // Sometimes pending structs: an update from a third client that depends on one never sent.
      if (r() < 0.05) {
        const a = new Y.Doc();
        a.getArray("x").insert(0, [1]);
        const first = Y.encodeStateAsUpdate(a);
        a.getArray("x").insert(1, [2]);
        Y.applyUpdate(doc, Y.diffUpdate(Y.encodeStateAsUpdate(a), Y.encodeStateVectorFromUpdate(first)));
        if (r() < 0.5) Y.applyUpdate(doc, first);
      }
      for (const sv of [new Uint8Array([0]), Y.encodeStateVector(other), Y.encodeStateVector(doc)]) {
        const want = step2Of("log/x", Y.encodeStateAsUpdate(doc, sv));
        expect(step2Frame("log/x", doc, sv)).toEqual(want);
      }
    }
  });
});
