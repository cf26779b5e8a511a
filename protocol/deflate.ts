/**
 * Deflated binary frames. The room sends a large binary frame — the whole namespace on a first
 * load (as a sync step 2, or as a Yjs update followed by a small step 2 with what changed since:
 * `party/kept-snapshot.ts`), or a stream's whole log window — compressed: `varUint kind=2, varUint length,
 * varUint8Array zlib` where `zlib` is the zlib stream (RFC 1950, "deflate") of one whole binary
 * frame of `length` bytes. The flat state layout (`entities.ts`) repeats the root name and the
 * entity key in every field's Yjs item, and Yjs updates do not share strings; deflate does
 * (a 100,000-entity namespace: 20 MB of update, about 2 MB deflated); a log window repeats its
 * events' field names (10,000 small events: 1.2 MB, about 80 KB deflated).
 *
 * Only the room sends them, and only to agents (protocol version 2 on): a stock Yjs client
 * gets plain y-websocket messages. The room compresses with the platform's CompressionStream
 * (workerd, browsers and Node all have it); the client inflates synchronously
 * (`client/inflate.ts`), so frames are still handled in the order they came.
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import type { ErrorBody } from "./codes.ts";

/** The first varUint of a deflated binary frame (0: doc frame, 1: chunk; `binary.ts`). */
export const BINARY_KIND_DEFLATED = 2;
/** Frames smaller than this are sent as they are: compressing them saves little. */
export const DEFLATE_MIN_BYTES = 64 * 1024;

/** Compresses a whole binary frame into a deflated frame. */
export async function deflateFrame(frame: Uint8Array): Promise<Uint8Array> {
  // Written to the compressor as it is: a Blob around it would copy the frame first (a log
  // window's first sync is over a megabyte). A failure surfaces through the readable side.
  const compressor = new CompressionStream("deflate");
  const writer = compressor.writable.getWriter();
  writer.write(frame as Uint8Array<ArrayBuffer>).catch(() => {});
  writer.close().catch(() => {});
  const zlib = new Uint8Array(await new Response(compressor.readable).arrayBuffer());
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, BINARY_KIND_DEFLATED);
  encoding.writeVarUint(encoder, frame.byteLength);
  encoding.writeVarUint8Array(encoder, zlib);
  return encoding.toUint8Array(encoder);
}

export type DeflatedFrame = { length: number; zlib: Uint8Array };

/**
 * Reads a deflated frame's header: null if `bytes` is another kind of frame, an error if it
 * is truncated or says it inflates to more than `maxBytes`.
 */
export function readDeflatedFrame(
  bytes: Uint8Array,
  maxBytes: number,
): { ok: true; frame: DeflatedFrame | null } | { ok: false; error: ErrorBody } {
  try {
    const decoder = decoding.createDecoder(bytes);
    if (decoding.readVarUint(decoder) !== BINARY_KIND_DEFLATED) return { ok: true, frame: null };
    const length = decoding.readVarUint(decoder);
    if (length > maxBytes) {
      return { ok: false, error: { code: "TOO_LARGE", message: `deflated frame larger than ${maxBytes} bytes` } };
    }
    return { ok: true, frame: { length, zlib: decoding.readVarUint8Array(decoder) } };
  } catch {
    return { ok: false, error: { code: "BAD_FRAME", message: "truncated deflated frame" } };
  }
}
