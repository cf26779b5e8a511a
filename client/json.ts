/**
 * Values that travel: everything an agent hands the library (event data, call input and
 * output, message input) crosses the wire as JSON. Not re-exported from the package entry
 * point; events and rpc share it so a bad value gets the same typed error everywhere.
 */
import { CrosstalkError, MAX_FRAME_BYTES } from "../protocol/index.ts";
import type { Json } from "./state.ts";

/** A JSON copy of `value` (undefined becomes null), or why it cannot travel. */
export function toJson(value: unknown): Json | CrosstalkError {
  let text: string;
  try {
    text = JSON.stringify(value ?? null);
  } catch (error) {
    // A circular value (TypeError) or one nested too deep for the stack (RangeError).
    return new CrosstalkError("INVALID_ARGUMENT", `value is not JSON: ${(error as Error).message}`);
  }
  if (text.length > MAX_FRAME_BYTES - 4096)
    return new CrosstalkError("TOO_LARGE", `value is ${text.length} bytes; a message carries at most about 1 MB`);
  return JSON.parse(text) as Json;
}
