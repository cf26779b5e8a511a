/**
 * Inflates the room's deflated binary frames (`protocol/deflate.ts`) with fflate, synchronously:
 * the transport handles every frame in the order it came, which an async DecompressionStream
 * would break (a document's snapshot must apply before the updates and errors sent after it).
 * Not re-exported from the package entry point; `transport.ts` uses it.
 */
import { unzlibSync } from "fflate";
import { type ErrorBody, MAX_REASSEMBLED_BYTES, readDeflatedFrame } from "../protocol/index.ts";

/** `bytes` as it was before the room deflated it; as it is if it is not a deflated frame. */
export function inflateFrame(bytes: Uint8Array): { ok: true; frame: Uint8Array } | { ok: false; error: ErrorBody } {
  const read = readDeflatedFrame(bytes, MAX_REASSEMBLED_BYTES);
  if (!read.ok) return read;
  if (!read.frame) return { ok: true, frame: bytes };
  const { length, zlib } = read.frame;
  try {
    // One byte of room past the stated length: more output than stated shows as a wrong length.
    const frame = unzlibSync(zlib, { out: new Uint8Array(length + 1) });
    if (frame.byteLength === length) return { ok: true, frame };
  } catch {
    // Reported below.
  }
  return { ok: false, error: { code: "BAD_FRAME", message: "deflated frame does not inflate to its stated length" } };
}
