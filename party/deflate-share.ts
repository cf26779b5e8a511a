/**
 * Deflated state snapshots shared between sessions, kept until the document changes. Deflating
 * a big namespace's sync step 2 is most of the room's part of a first load (a 100,000-entity
 * namespace: a 20 MB frame, hundreds of ms of compression); every agent that opens it from
 * scratch asks for the same frame, and until someone writes to it the answer is the same. So
 * the compressed frame (about a tenth of the encoded document, far less than the loaded
 * document itself) stays beside the document until its next update, or until the document is
 * unloaded (`doc-cache.ts`: the WeakMap lets it go with the Y.Doc).
 *
 * Only answers to short state vectors (a fresh client's is empty) are kept, as in `sync-share.ts`.
 */
import type * as Y from "yjs";
import { deflateFrame } from "../protocol/index.ts";

/** Only short state vectors (few writers) are compared; longer ones are answered one by one. */
const MAX_SHARED_SV_BYTES = 64;

const kept = new WeakMap<Y.Doc, { sv: string; frame: Promise<Uint8Array> }>();
const watched = new WeakSet<Y.Doc>();

const svKey = (sv: Uint8Array): string | null =>
  sv.byteLength <= MAX_SHARED_SV_BYTES ? String.fromCharCode(...sv) : null;

/** The kept deflated answer to state vector `sv`, if `ydoc` has not changed since it was made. */
export function keptDeflated(ydoc: Y.Doc, sv: Uint8Array): Promise<Uint8Array> | undefined {
  const key = svKey(sv);
  const hit = kept.get(ydoc);
  return key !== null && hit?.sv === key ? hit.frame : undefined;
}

/**
 * Deflates `frame`, the sync step 2 answering `sv` that `ydoc` gives now (call it in the same
 * turn as the frame was made), and keeps the result for the next session asking the same.
 * Resolves to `frame` itself should compression fail (and keeps nothing then).
 */
export function deflateShared(ydoc: Y.Doc, sv: Uint8Array, frame: Uint8Array): Promise<Uint8Array> {
  const key = svKey(sv);
  const deflated = deflateFrame(frame);
  if (key === null) return deflated.catch(() => frame);
  if (!watched.has(ydoc)) {
    watched.add(ydoc);
    ydoc.on("update", () => kept.delete(ydoc));
  }
  const entry = { sv: key, frame: deflated };
  kept.set(ydoc, entry);
  return deflated.catch(() => {
    if (kept.get(ydoc) === entry) kept.delete(ydoc);
    return frame;
  });
}
