/**
 * Big state snapshots, compressed once and kept for the next loaders. Encoding and deflating a
 * big namespace for a fresh agent is most of the room's part of its load (100,000 entities: a
 * 20 MB update, over a second of room CPU), and every agent that opens it from scratch asks for
 * the same thing. So the room keeps the deflated snapshot beside the document, and answers a
 * loader with two frames: that snapshot as a Yjs update, then a sync step 2 holding every update
 * the document took since the snapshot was made (merged; empty when none). The agent is synced,
 * at `ready`, with the document as it is now, and the room pays for the updates since, not for
 * the whole document again.
 *
 * What was written since the snapshot is kept too, until it outweighs a share of it
 * ({@link TAIL_SHARE}); then the snapshot goes, and the next loader makes a fresh one. Both go
 * with the Y.Doc (WeakMap) when the document is unloaded (`doc-cache.ts`) or rebased.
 *
 * Only answers to short state vectors (a fresh client's is empty) are kept, as in `sync-share.ts`;
 * only agents get these frames (a stock Yjs client reads no deflated frame), and only for state.
 */
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { DEFLATE_MIN_BYTES, type DocName, deflateFrame, encodeDocFrame } from "../protocol/index.ts";
import { step2Of, svKey } from "./sync-share.ts";

/** A snapshot is dropped once the updates since it weigh more than 1/TAIL_SHARE of it. */
const TAIL_SHARE = 8;
/** A Yjs update with nothing in it. */
const EMPTY_UPDATE = new Uint8Array([0, 0]);

type Kept = {
  sv: string;
  /** The deflated doc frame carrying the snapshot as an update (as it is, should deflating fail). */
  snapshot: Promise<Uint8Array>;
  bytes: number;
  /** Every update the document took since the snapshot, in order (merged now and then). */
  tail: Uint8Array[];
  tailBytes: number;
};

const kept = new WeakMap<Y.Doc, Kept>();
const watched = new WeakSet<Y.Doc>();

function watch(ydoc: Y.Doc): void {
  if (watched.has(ydoc)) return;
  watched.add(ydoc);
  ydoc.on("update", (update: Uint8Array) => {
    const entry = kept.get(ydoc);
    if (!entry) return;
    entry.tail.push(update);
    entry.tailBytes += update.byteLength;
    if (entry.tailBytes * TAIL_SHARE > entry.bytes) kept.delete(ydoc);
  });
}

/**
 * The frames that answer an agent's sync step 1 with state vector `sv` for state document
 * `name`, in order: a promise resolves to a deflated frame. Made from `ydoc` as it is now (send
 * them once that is stored, as any step 2). Small answers are one plain step 2.
 */
export function snapshotFrames(name: DocName, ydoc: Y.Doc, sv: Uint8Array): (Uint8Array | Promise<Uint8Array>)[] {
  const key = svKey(sv);
  let entry = key === null ? undefined : kept.get(ydoc);
  if (entry?.sv !== key) entry = undefined;
  if (!entry) {
    const update = Y.encodeStateAsUpdate(ydoc, sv);
    if (update.byteLength < DEFLATE_MIN_BYTES) return [step2Of(name, update)];
    const frame = encodeDocFrame(name, (e) => syncProtocol.writeUpdate(e, update));
    const snapshot = deflateFrame(frame).catch(() => frame);
    if (key === null) return [snapshot, step2Of(name, EMPTY_UPDATE)];
    entry = { sv: key, snapshot, bytes: update.byteLength, tail: [], tailBytes: 0 };
    watch(ydoc);
    kept.set(ydoc, entry);
  }
  if (entry.tail.length > 1) entry.tail = [Y.mergeUpdates(entry.tail)];
  return [entry.snapshot, step2Of(name, entry.tail[0] ?? EMPTY_UPDATE)];
}
