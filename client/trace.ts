/**
 * Trace context: correlation and causation ids (ours) plus a W3C `traceparent` on every
 * event, call and message, so a team can hand its work to OpenTelemetry. All items of one
 * piece of work share a correlation id, and the trace id is derived from it, so they share
 * one OpenTelemetry trace; each item gets its own span id.
 */

import type { Json } from "./entities.ts";
import { CrosstalkError } from "./errors.ts";
import type { StoredEvent } from "./protocol.ts";

const HEX32 = /^[0-9a-f]{32}$/;

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
  const hex = correlationId.replace(/-/g, "").toLowerCase();
  if (HEX32.test(hex) && !/^0+$/.test(hex)) return hex;
  return [1, 2, 3, 4].map((seed) => fnv1a(correlationId, seed)).join("");
}

export function newSpanId(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  if (bytes.every((b) => b === 0)) bytes[7] = 1;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `00-<trace id>-<span id>-01` (version 00, sampled). */
export const traceparentFor = (correlationId: string, spanId = newSpanId()): string =>
  `00-${traceIdOf(correlationId)}-${spanId}-01`;

/** One item of a piece of work: an event, a call or a fire-and-forget message. */
export type TraceNode = {
  kind: "event" | "call" | "message";
  /** Event id, call id or message id. */
  id: string;
  causationId?: string;
  correlationId: string;
  /** Events: stream, seq, type, source. Calls and messages: from, to, method, outcome. */
  detail: Record<string, Json>;
  ts: number;
  children: TraceNode[];
};

/** Builds the causal forest: each node under the node its `causationId` names. */
export function buildTraceTree(nodes: Omit<TraceNode, "children">[]): TraceNode[] {
  const byId = new Map<string, TraceNode>();
  for (const n of [...nodes].sort((a, b) => a.ts - b.ts)) {
    if (!byId.has(n.id)) byId.set(n.id, { ...n, children: [] });
  }
  const roots: TraceNode[] = [];
  for (const node of byId.values()) {
    const parent = node.causationId ? byId.get(node.causationId) : undefined;
    if (parent && parent !== node) parent.children.push(node);
    else roots.push(node);
  }
  return roots;
}

export const eventNode = (e: StoredEvent): Omit<TraceNode, "children"> => {
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

/** The trace options for work caused by `event`: same correlation id, the event as cause. */
export const traceFrom = (
  event: Pick<StoredEvent, "id" | "correlationId">,
): { correlationId: string; causationId: string } => ({
  correlationId: event.correlationId ?? event.id,
  causationId: event.id,
});
