/**
 * Trace context: correlation and causation ids (ours) plus a W3C `traceparent` on every
 * event, call and message, so a team can hand its work to OpenTelemetry. All items of one
 * piece of work share a correlation id, and the trace id is derived from it, so they share
 * one OpenTelemetry trace; each item gets its own span id.
 */

import type { Json } from "./entities.ts";
import { CrosstalkError } from "./errors.ts";
import { randomBytes, toHex } from "./ids.ts";
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
  const bytes = randomBytes(8);
  if (bytes.every((b) => b === 0)) bytes[7] = 1;
  return toHex(bytes);
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

/** The fields of a node that {@link buildTraceTree} reads: a node without its children. */
export type TraceItem = Omit<TraceNode, "children">;

const streamOf = (n: TraceItem): string =>
  n.kind === "event" && typeof n.detail.stream === "string" ? n.detail.stream : "";
const seqOf = (n: TraceItem): number =>
  n.kind === "event" && typeof n.detail.seq === "number" && Number.isFinite(n.detail.seq) ? n.detail.seq : 0;

/** Room-time order; ties: events by stream then seq (calls and messages first), then id. */
function compareItems(a: TraceItem, b: TraceItem): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1;
  const sa = streamOf(a);
  const sb = streamOf(b);
  if (sa !== sb) return sa < sb ? -1 : 1;
  const qa = seqOf(a);
  const qb = seqOf(b);
  if (qa !== qb) return qa < qb ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Builds the causal forest of one piece of work: each node under the node its
 * `causationId` names. Every node appears exactly once:
 * - a node without a cause, with itself as cause, or with a cause outside the set is a root;
 * - a causation cycle is cut at its earliest node, which becomes a root;
 * - of several nodes with one id, the first in `nodes` is kept.
 *
 * Roots and siblings are in room-time order (ties: events by stream then seq, then id).
 * Iterative: chains of any depth are fine.
 */
export function buildTraceTree(nodes: readonly TraceItem[]): TraceNode[] {
  const byId = new Map<string, TraceNode>();
  for (const n of nodes) if (!byId.has(n.id)) byId.set(n.id, { ...n, children: [] });
  const sorted = [...byId.values()].sort(compareItems);
  const index = new Map<TraceNode, number>();
  for (const [i, node] of sorted.entries()) index.set(node, i);
  // parent[i]: the index of node i's cause, or -1 for a root.
  const parent = sorted.map((node) => {
    const cause = node.causationId;
    const up = cause !== undefined && cause !== node.id ? byId.get(cause) : undefined;
    return up ? (index.get(up) as number) : -1;
  });
  // Each node has at most one parent, so a cycle is found by walking up from each node once:
  // 0 = not seen, 1 = on the current walk, 2 = done.
  const state = new Uint8Array(sorted.length);
  for (let start = 0; start < sorted.length; start++) {
    const walk: number[] = [];
    let i = start;
    while (i !== -1 && state[i] === 0) {
      state[i] = 1;
      walk.push(i);
      i = parent[i] as number;
    }
    if (i !== -1 && state[i] === 1) {
      // `i` is on this walk: the cycle is the walk from `i` on. Cut it at its earliest node.
      let earliest = i;
      for (let k = walk.indexOf(i); k < walk.length; k++) earliest = Math.min(earliest, walk[k] as number);
      parent[earliest] = -1;
    }
    for (const k of walk) state[k] = 2;
  }
  const roots: TraceNode[] = [];
  for (const [i, node] of sorted.entries()) {
    const up = parent[i] as number;
    if (up === -1) roots.push(node);
    else (sorted[up] as TraceNode).children.push(node);
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
