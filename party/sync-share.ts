/**
 * Sync step 2 frames shared between sessions. Agents joining together sync a document from the
 * same state (a fresh client: the empty state vector), and each answer is the whole document
 * encoded: ten subscribers of a 10,000-event log window meant ten copies of it at once. The
 * frame for one state vector is kept until the document changes, at most
 * {@link SHARE_MS}, so a burst of joins costs one encoding and a quiet document holds no copy.
 * Its deflated form (`protocol/deflate.ts`) is shared the same way: one compression per burst.
 */
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { type DocName, deflateFrame, encodeDocFrame } from "../protocol/index.ts";

/** How long an answer is kept for the next session asking from the same state. */
export const SHARE_MS = 1000;
/** Only short state vectors (few writers) are compared; longer ones are answered one by one. */
const MAX_SHARED_SV_BYTES = 64;

const shared = new WeakMap<Y.Doc, { sv: string; frame: Uint8Array }>();
const watched = new WeakSet<Y.Doc>();
/** Keyed by the frame itself: it lives as long as someone still holds the frame. */
const deflated = new WeakMap<Uint8Array, Promise<Uint8Array>>();

/** `frame` (from {@link step2Frame}) deflated, compressed once however many sessions are sent it. */
export function deflatedStep2(frame: Uint8Array): Promise<Uint8Array> {
  let compressed = deflated.get(frame);
  if (!compressed) {
    compressed = deflateFrame(frame);
    deflated.set(frame, compressed);
  }
  return compressed;
}

/** A state vector as a key to compare answers by; null for long ones (many writers), answered one by one. */
export const svKey = (sv: Uint8Array): string | null =>
  sv.byteLength <= MAX_SHARED_SV_BYTES ? String.fromCharCode(...sv) : null;

/**
 * A sync step 2 frame for document `name` carrying `update`. Made in one buffer of its exact
 * size: an encoder would grow into a second megabyte-sized buffer for a log window and then
 * copy both into a third.
 */
export function step2Of(name: DocName, update: Uint8Array): Uint8Array {
  const header = step2Header(name, update.byteLength);
  const frame = new Uint8Array(header.byteLength + update.byteLength);
  frame.set(header);
  frame.set(update, header.byteLength);
  return frame;
}

/** What a sync step 2 frame of document `name` starts with, up to its update of `length` bytes. */
const step2Header = (name: DocName, length: number): Uint8Array =>
  encodeDocFrame(name, (e) => {
    encoding.writeVarUint(e, syncProtocol.messageYjsSyncStep2);
    encoding.writeVarUint(e, length);
  });

/** The size of the last whole-document step 2 frame of a document: the next one is encoded into a buffer about that large. */
const lastSize = new WeakMap<Y.Doc, number>();

/**
 * Yjs's V1 update encoder that ends as a whole sync step 2 frame of document `name`: the
 * header, then the update copied once from the encoder's own buffers, instead of the update
 * copied out of them and then again into the frame (a log window: two megabyte-sized copies).
 */
class Step2Encoder extends Y.UpdateEncoderV1 {
  constructor(
    readonly name: DocName,
    sizeHint: number | undefined,
  ) {
    super();
    // Sized to the last frame: a growing encoder would also keep every smaller buffer it outgrew.
    if (sizeHint !== undefined) this.restEncoder.cbuf = new Uint8Array(sizeHint + (sizeHint >>> 3) + 64);
  }

  override toUint8Array(): Uint8Array {
    const { bufs, cbuf, cpos } = this.restEncoder;
    const length = encoding.length(this.restEncoder);
    const header = step2Header(this.name, length);
    const frame = new Uint8Array(header.byteLength + length);
    frame.set(header);
    let at = header.byteLength;
    for (const buf of bufs) {
      frame.set(buf, at);
      at += buf.byteLength;
    }
    frame.set(cbuf.subarray(0, cpos), at);
    return frame;
  }
}

/** The sync step 2 frame answering state vector `sv` for document `name` (throws on an invalid `sv`). */
export function step2Frame(name: DocName, ydoc: Y.Doc, sv: Uint8Array): Uint8Array {
  const key = svKey(sv);
  const hit = shared.get(ydoc);
  if (key !== null && hit?.sv === key) return hit.frame;
  // With pending structs or deletes, Yjs merges them into the encoder's output: that must be an update then.
  const pending = ydoc.store.pendingStructs !== null || ydoc.store.pendingDs !== null;
  // A client holding nothing yet (the empty state vector) is sent the whole document.
  const whole = sv.byteLength === 1 && sv[0] === 0;
  const frame = pending
    ? step2Of(name, Y.encodeStateAsUpdate(ydoc, sv))
    : Y.encodeStateAsUpdateV2(ydoc, sv, new Step2Encoder(name, whole ? lastSize.get(ydoc) : undefined));
  if (whole) lastSize.set(ydoc, frame.byteLength);
  if (key === null) return frame;
  if (!watched.has(ydoc)) watch(ydoc);
  const entry = { sv: key, frame };
  shared.set(ydoc, entry);
  setTimeout(() => {
    if (shared.get(ydoc) === entry) shared.delete(ydoc);
  }, SHARE_MS);
  return frame;
}

/**
 * Drops a document's shared answer when it changes. A function of its own: a listener made
 * inside `step2Frame` would share its closure scope, which holds the frame, and so keep the
 * first answer (a log window: a megabyte) alive as long as the document.
 */
function watch(ydoc: Y.Doc): void {
  watched.add(ydoc);
  ydoc.on("update", () => shared.delete(ydoc));
}
