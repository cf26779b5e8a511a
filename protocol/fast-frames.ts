/**
 * Fast acceptance of the hot frames (a call and its answer, on both sides). A zod parse of
 * an `rpc.call` costs several times its `JSON.parse`, most of it re-checking `z.json()`
 * values that `JSON.parse` can only have produced as JSON. These checks accept a frame only
 * when its schema in `frames.ts` would accept it *unchanged* (every key known, nothing to
 * strip): then the parsed object is the frame. Anything else — an unknown key, a bad field,
 * an error answer — falls through to the zod schema, which decides and words the error, so
 * what is accepted and what is refused stays exactly what the schemas say.
 *
 * Not re-exported from the protocol entry point; used by `parseFrame` in `frames.ts` and
 * checked against the zod schemas in `test/fast-frames.test.ts`.
 */
import { METHOD, NAME } from "./names.ts";
import { TRACEPARENT } from "./schemas.ts";

type Raw = Record<string, unknown>;

/** `refSchema`: 1..64 characters. */
const isRef = (v: unknown): boolean => typeof v === "string" && v.length >= 1 && v.length <= 64;
const isName = (v: unknown): boolean => typeof v === "string" && NAME.test(v);
const isMethod = (v: unknown): boolean => typeof v === "string" && METHOD.test(v);
/** `targetSchema`: an agent name, or `{ role }` with nothing else in it. */
const isTarget = (v: unknown): boolean => {
  if (typeof v === "string") return NAME.test(v);
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  for (const key in v) if (key !== "role") return false;
  return isName((v as Raw).role);
};
const isSafeIntIn = (v: unknown, min: number, max: number): boolean =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= max;
/** Any value `JSON.parse` produced (its depth was checked before). */
const isPresent = (frame: Raw, key: string): boolean => Object.hasOwn(frame, key) && frame[key] !== undefined;

/** The optional `traceFields` and `idempotencyKey`; false for any other key. */
function optionalField(key: string, v: unknown): boolean {
  switch (key) {
    case "callId":
      return typeof v === "string" && v.length >= 1 && v.length <= 128;
    case "correlationId":
    case "causationId":
      return typeof v === "string" && v.length <= 128;
    case "traceparent":
      return typeof v === "string" && TRACEPARENT.test(v);
    case "idempotencyKey":
      return typeof v === "string" && v.length >= 1 && v.length <= 200;
    default:
      return false;
  }
}

function rpcCall(f: Raw): boolean {
  for (const key in f) {
    const v = f[key];
    switch (key) {
      case "type":
      case "input":
        continue;
      case "ref":
        if (!isRef(v)) return false;
        continue;
      case "to":
        if (!isTarget(v)) return false;
        continue;
      case "method":
        if (!isMethod(v)) return false;
        continue;
      case "timeoutMs":
        if (!isSafeIntIn(v, 1, 3_600_000)) return false;
        continue;
      default:
        if (!optionalField(key, v)) return false;
    }
  }
  return (
    isPresent(f, "ref") &&
    isPresent(f, "to") &&
    isPresent(f, "method") &&
    isPresent(f, "input") &&
    isPresent(f, "timeoutMs")
  );
}

function rpcRequest(f: Raw): boolean {
  for (const key in f) {
    const v = f[key];
    switch (key) {
      case "type":
      case "input":
        continue;
      case "id":
        if (!isRef(v)) return false;
        continue;
      case "from":
        if (!isName(v)) return false;
        continue;
      case "method":
        if (!isMethod(v)) return false;
        continue;
      case "deadline":
        if (typeof v !== "number" || !Number.isFinite(v)) return false;
        continue;
      default:
        if (!optionalField(key, v)) return false;
    }
  }
  return (
    isPresent(f, "id") &&
    isPresent(f, "from") &&
    isPresent(f, "method") &&
    isPresent(f, "input") &&
    isPresent(f, "deadline")
  );
}

/** A successful answer `{ type, <idKey>, ok: true, output }` and nothing else; failures go to zod. */
function okAnswer(idKey: "id" | "ref"): (f: Raw) => boolean {
  return (f) => {
    let keys = 0;
    for (const key in f) {
      keys++;
      if (key !== "type" && key !== idKey && key !== "ok" && key !== "output") return false;
    }
    return keys === 4 && f.ok === true && isRef(f[idKey]) && f.output !== undefined;
  };
}

/**
 * Checks by frame type: true only when the zod schema of that type accepts the frame as it is.
 * The caller has checked `type` and the nesting depth.
 */
export const fastClientFrames: Readonly<Record<string, (frame: Raw) => boolean>> = {
  "rpc.call": rpcCall,
  "rpc.result": okAnswer("id"),
};

export const fastRoomFrames: Readonly<Record<string, (frame: Raw) => boolean>> = {
  "rpc.request": rpcRequest,
  "rpc.response": okAnswer("ref"),
};
