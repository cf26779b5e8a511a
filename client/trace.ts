/**
 * The causal tree of one piece of work, built from the items the room reports for
 * `trace.get` (trace ids and the items themselves: `protocol/trace.ts`).
 */
import type { StoredEvent, TraceItem } from "../protocol/index.ts";

/** One item of a piece of work with the items it caused. */
export type TraceNode = TraceItem & { children: TraceNode[] };

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

/** The trace options for work caused by `event`: same correlation id, the event as cause. */
export const traceFrom = (
  event: Pick<StoredEvent, "id" | "correlationId">,
): { correlationId: string; causationId: string } => ({
  correlationId: event.correlationId ?? event.id,
  causationId: event.id,
});
