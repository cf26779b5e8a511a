/**
 * Binary frames: a Yjs document message inside a small envelope that names the document,
 * and the chunking that carries a frame larger than the socket's message limit.
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import type { ErrorBody } from "./codes.ts";
import { MAX_FRAME_BYTES } from "./limits.ts";
import { type DocName, docNameSchema } from "./names.ts";

/** The first varUint of a binary frame. Only one kind exists today; the byte leaves room. */
export const BINARY_KIND_DOC = 0;
/** y-websocket's message types, carried inside a doc frame. */
export const Y_MESSAGE_SYNC = 0;
/** y-websocket's awareness message type (stock clients only; agents use presence). */
export const Y_MESSAGE_AWARENESS = 1;

/**
 * A binary frame: `varUint kind=0, varString doc, y-websocket message` where the message is
 * `varUint 0 (sync)` followed by a y-protocols sync message (step 1, step 2 or update).
 */
export function encodeDocFrame(doc: DocName, write: (encoder: encoding.Encoder) => void): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, BINARY_KIND_DOC);
  encoding.writeVarString(encoder, doc);
  encoding.writeVarUint(encoder, Y_MESSAGE_SYNC);
  write(encoder);
  return encoding.toUint8Array(encoder);
}

export type DocFrame = { doc: DocName; decoder: decoding.Decoder };

/** Reads a doc frame's header; the returned decoder sits at the y-protocols sync message. */
export function decodeDocFrame(bytes: Uint8Array): { ok: true; frame: DocFrame } | { ok: false; error: ErrorBody } {
  try {
    const decoder = decoding.createDecoder(bytes);
    const kind = decoding.readVarUint(decoder);
    if (kind !== BINARY_KIND_DOC) {
      return { ok: false, error: { code: "UNKNOWN_FRAME", message: `unknown binary frame kind ${kind}` } };
    }
    const name = docNameSchema.safeParse(decoding.readVarString(decoder));
    if (!name.success)
      return { ok: false, error: { code: "BAD_FRAME", message: "binary frame names no valid document" } };
    const yType = decoding.readVarUint(decoder);
    if (yType !== Y_MESSAGE_SYNC) {
      return { ok: false, error: { code: "UNKNOWN_FRAME", message: `unsupported y message type ${yType}` } };
    }
    return { ok: true, frame: { doc: name.data, decoder } };
  } catch {
    return { ok: false, error: { code: "BAD_FRAME", message: "truncated binary frame" } };
  }
}

// ---------------------------------------------------------------------------------------
// Chunking of large binary frames

/** The first varUint of a binary frame that carries one slice of a larger binary frame. */
export const BINARY_KIND_CHUNK = 1;
/** Room for the chunk header inside the frame limit. */
const CHUNK_PAYLOAD_BYTES = MAX_FRAME_BYTES - 64;
/**
 * What a client accepts reassembled from the room (a large document snapshot). The room
 * accepts far less from a client (`DEFAULT_ROOM_LIMITS.maxUpdateBytes`): it has ~128 MB.
 */
export const MAX_REASSEMBLED_BYTES = 256 * 1024 * 1024;
let nextChunkId = 1;

/**
 * Splits a binary frame that exceeds {@link MAX_FRAME_BYTES} into chunk frames:
 * `varUint kind=1, varUint id, varUint index, varUint total, varUint8Array slice`.
 * A socket delivers in order, so the receiver joins slices as they come.
 */
export function chunkBinary(bytes: Uint8Array): Uint8Array[] {
  const id = nextChunkId++;
  const total = Math.ceil(bytes.byteLength / CHUNK_PAYLOAD_BYTES);
  const frames: Uint8Array[] = [];
  for (let index = 0; index < total; index++) {
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, BINARY_KIND_CHUNK);
    encoding.writeVarUint(encoder, id);
    encoding.writeVarUint(encoder, index);
    encoding.writeVarUint(encoder, total);
    encoding.writeVarUint8Array(
      encoder,
      bytes.subarray(index * CHUNK_PAYLOAD_BYTES, (index + 1) * CHUNK_PAYLOAD_BYTES),
    );
    frames.push(encoding.toUint8Array(encoder));
  }
  return frames;
}

/**
 * Joins chunk frames from one socket. `push` returns the whole frame when its last slice
 * arrives, `null` while incomplete, or an error for slices out of order or too large.
 */
export function createReassembler(options: { maxBytes?: number } = {}): {
  push(bytes: Uint8Array): { ok: true; frame: Uint8Array | null } | { ok: false; error: ErrorBody };
} {
  let current: { id: number; total: number; parts: Uint8Array[]; bytes: number } | null = null;
  const maxBytes = options.maxBytes ?? MAX_REASSEMBLED_BYTES;
  return {
    push(bytes) {
      const decoder = decoding.createDecoder(bytes);
      try {
        if (decoding.readVarUint(decoder) !== BINARY_KIND_CHUNK) return { ok: true, frame: bytes };
        const id = decoding.readVarUint(decoder);
        const index = decoding.readVarUint(decoder);
        const total = decoding.readVarUint(decoder);
        const part = decoding.readVarUint8Array(decoder);
        if (index === 0) current = { id, total, parts: [], bytes: 0 };
        if (!current || current.id !== id || current.parts.length !== index || current.total !== total) {
          current = null;
          return { ok: false, error: { code: "BAD_FRAME", message: "chunk out of order" } };
        }
        current.parts.push(part);
        current.bytes += part.byteLength;
        if (current.bytes > maxBytes || total * CHUNK_PAYLOAD_BYTES > maxBytes + CHUNK_PAYLOAD_BYTES) {
          current = null;
          return { ok: false, error: { code: "TOO_LARGE", message: `chunked frame larger than ${maxBytes} bytes` } };
        }
        if (current.parts.length < total) return { ok: true, frame: null };
        const out = new Uint8Array(current.bytes);
        let at = 0;
        for (const p of current.parts) {
          out.set(p, at);
          at += p.byteLength;
        }
        current = null;
        return { ok: true, frame: out };
      } catch {
        current = null;
        return { ok: false, error: { code: "BAD_FRAME", message: "truncated chunk frame" } };
      }
    },
  };
}
