/**
 * Trace context on the wire: correlation and causation ids (ours) plus a W3C `traceparent`
 * on every event, call and message, so a team can hand its work to OpenTelemetry. All items
 * of one piece of work share a correlation id, and the trace id is derived from it, so they
 * share one OpenTelemetry trace; each item gets its own span id.
 *
 * The room reports items with {@link eventNode}; the client builds the causal tree from them
 * (`client/trace.ts`).
 */
import { CrosstalkError } from "./errors.ts";
import { randomBytes, toHex } from "./ids.ts";
import type { StoredEvent, TraceItem } from "./schemas.ts";

const HEX32 = /^[0-9a-f]{32}$/;
const ZERO32 = "0".repeat(32);

/** FNV-1a, 32-bit, with a seed: four of them make a 128-bit trace id from any string. */
function fnv1a(text: string, seed: number): string {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** The W3C trace id for a correlation id: a UUID's own hex, otherwise a hash of it. */
export function traceIdOf(correlationId: string): string {
  // Event and call ids are lowercase UUIDs: their hex without a regex replace (subscribers
  // derive a trace id per event delivered). Anything else takes the general way below.
  const c = correlationId;
  if (c.length === 36 && c[8] === "-" && c[13] === "-" && c[18] === "-" && c[23] === "-") {
    const hex = c.slice(0, 8) + c.slice(9, 13) + c.slice(14, 18) + c.slice(19, 23) + c.slice(24);
    if (HEX32.test(hex) && hex !== ZERO32) return hex;
  }
  const hex = correlationId.replace(/-/g, "").toLowerCase();
  if (HEX32.test(hex) && !/^0+$/.test(hex)) return hex;
  return [1, 2, 3, 4].map((seed) => fnv1a(correlationId, seed)).join("");
}

export function newSpanId(): string {
  const bytes = randomBytes(8);
  if (bytes.every((b) => b === 0)) bytes[7] = 1;
  return toHex(bytes);
}

/** `00-<trace id>-<span id>-01` (version 00, sampled). */
export const traceparentFor = (correlationId: string, spanId = newSpanId()): string =>
  `00-${traceIdOf(correlationId)}-${spanId}-01`;

/** A stored event as an item of its piece of work. */
export const eventNode = (e: StoredEvent): TraceItem => {
  if (!e.correlationId) throw new CrosstalkError("INTERNAL", "event without correlation id");
  return {
    kind: "event",
    id: e.id,
    ...(e.causationId ? { causationId: e.causationId } : {}),
    correlationId: e.correlationId,
    detail: { stream: e.stream, seq: e.seq, type: e.type, source: e.source },
    ts: e.ts,
  };
};
