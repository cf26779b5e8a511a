/**
 * Loading a stored document without lib0's per-value garbage. Yjs reads every `ContentAny`
 * value (each event of a log window: an array of strings, numbers and a data object) through
 * lib0's `readAny`, which makes a short-lived view for nearly every value: a `Uint8Array` view
 * and a `TextDecoder` call per string, a `DataView` per float. A 10,000-event window meant
 * about 15 such objects per event, 200,000 in all, on top of what the document keeps: the
 * room's heap grew for that burst and did not give the space back.
 *
 * {@link LeanDecoderV1} is Yjs's own V1 decoder with only `readAny` replaced: short ASCII
 * strings are made straight from their bytes, floats are read through one scratch view, and
 * everything else (and any input lib0 would refuse) goes to lib0 as before, so the values and
 * the errors are the same. Used where the room loads a document (`storage.ts`).
 *
 * What the loaded document keeps is lighter too: a short string read again (an event type,
 * a source, a stream name, a key, a repeated value) is the string read before, not a copy —
 * a log window's events repeat most of theirs — and an array is made at its length (one
 * grown by `push` keeps room for 17 values: an event's six-value array held three times what
 * it needs).
 */
import * as decoding from "lib0/decoding";
import * as Y from "yjs";

/** Strings up to this many bytes, all ASCII, are made without a view (ids, types, names). */
const SHORT_STRING_BYTES = 64;
/** Per length, an array that `String.fromCharCode` reads the bytes from: reused, so no garbage. */
const charCodes: number[][] = Array.from({ length: SHORT_STRING_BYTES + 1 }, (_, n) => new Array<number>(n).fill(0));
/**
 * Short ASCII strings read lately, by a hash of their bytes (direct-mapped: a collision
 * replaces): a string read again is returned as the same string. Emptied after each load, so
 * it keeps nothing alive between loads.
 */
const RECENT_SLOTS = 4096;
const recent: (string | undefined)[] = new Array<string | undefined>(RECENT_SLOTS).fill(undefined);
const float = new DataView(new ArrayBuffer(8));
const floatBytes = new Uint8Array(float.buffer);

function readString(decoder: decoding.Decoder): string {
  const start = decoder.pos;
  const length = decoding.readVarUint(decoder);
  const { arr, pos } = decoder;
  if (length <= SHORT_STRING_BYTES && pos + length <= arr.length) {
    const codes = charCodes[length] as number[];
    let hash = length;
    let i = 0;
    for (; i < length; i++) {
      const byte = arr[pos + i] as number;
      if (byte >= 0x80) break;
      codes[i] = byte;
      hash = (Math.imul(hash, 31) + byte) | 0;
    }
    if (i === length) {
      decoder.pos = pos + length;
      const slot = hash & (RECENT_SLOTS - 1);
      const known = recent[slot];
      if (known !== undefined && sameChars(known, codes, length)) return known;
      const made = String.fromCharCode.apply(null, codes);
      recent[slot] = made;
      return made;
    }
  }
  decoder.pos = start;
  return decoding.readVarString(decoder);
}

function sameChars(known: string, codes: number[], length: number): boolean {
  if (known.length !== length) return false;
  for (let i = 0; i < length; i++) if (known.charCodeAt(i) !== codes[i]) return false;
  return true;
}

/** A big-endian float of `bytes` (4 or 8) bytes; lib0 reads (or refuses) one that is cut short. */
function readFloat(decoder: decoding.Decoder, bytes: 4 | 8): number {
  const { arr, pos } = decoder;
  if (pos + bytes > arr.length) return bytes === 4 ? decoding.readFloat32(decoder) : decoding.readFloat64(decoder);
  for (let i = 0; i < bytes; i++) floatBytes[i] = arr[pos + i] as number;
  decoder.pos = pos + bytes;
  return bytes === 4 ? float.getFloat32(0, false) : float.getFloat64(0, false);
}

/** lib0's `readAny`, value for value (its tags: `lib0/encoding` `writeAny`). */
export function readAny(decoder: decoding.Decoder): unknown {
  switch (decoder.arr[decoder.pos++]) {
    case 127:
      return undefined;
    case 126:
      return null;
    case 125:
      return decoding.readVarInt(decoder);
    case 124:
      return readFloat(decoder, 4);
    case 123:
      return readFloat(decoder, 8);
    case 121:
      return false;
    case 120:
      return true;
    case 119:
      return readString(decoder);
    case 118: {
      const length = decoding.readVarUint(decoder);
      const object: Record<string, unknown> = {};
      for (let i = 0; i < length; i++) {
        const key = readString(decoder);
        object[key] = readAny(decoder);
      }
      return object;
    }
    case 117: {
      const length = decoding.readVarUint(decoder);
      // Every value takes at least a byte: a length past the input is cut short, read as lib0 does.
      const array: unknown[] = length <= decoder.arr.length - decoder.pos ? new Array(length) : [];
      for (let i = 0; i < length; i++) array[i] = readAny(decoder);
      return array;
    }
    default:
      // A bigint, bytes, or not a tag at all: lib0 reads (or refuses) it.
      decoder.pos--;
      return decoding.readAny(decoder);
  }
}

/** Yjs's V1 update decoder, reading `ContentAny` values with {@link readAny}. */
export class LeanDecoderV1 extends Y.UpdateDecoderV1 {
  override readAny(): unknown {
    return readAny(this.restDecoder);
  }
}

/** `Y.applyUpdate`, decoding with {@link LeanDecoderV1}. */
export function applyStoredUpdate(doc: Y.Doc, update: Uint8Array, origin: unknown): void {
  try {
    Y.applyUpdateV2(doc, update, origin, LeanDecoderV1);
  } finally {
    recent.fill(undefined);
  }
}
