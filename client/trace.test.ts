/** The shared causal-tree builder and the W3C trace ids. */
import { describe, expect, it } from "vitest";
import { type TraceItem, traceIdOf, traceparentFor } from "../protocol/index.ts";
import { buildTraceTree, type TraceNode } from "./trace.ts";

let clock = 0;
const event = (
  id: string,
  causationId?: string,
  extra: Partial<TraceItem> & { stream?: string; seq?: number } = {},
): TraceItem => {
  const { stream = "main", seq = ++clock, ...rest } = extra;
  return {
    kind: "event",
    id,
    ...(causationId ? { causationId } : {}),
    correlationId: "work",
    detail: { stream, seq, type: `t.${id}`, source: "a-1" },
    ts: 1_000 + ++clock,
    ...rest,
  };
};
const call = (id: string, causationId?: string, extra: Partial<TraceItem> = {}): TraceItem => ({
  kind: "call",
  id,
  ...(causationId ? { causationId } : {}),
  correlationId: "work",
  detail: { from: "a-1", to: "b-1", method: `m.${id}`, outcome: "ok", ms: 3 },
  ts: 1_000 + ++clock,
  ...extra,
});
const message = (id: string, causationId?: string, extra: Partial<TraceItem> = {}): TraceItem => ({
  kind: "message",
  id,
  ...(causationId ? { causationId } : {}),
  correlationId: "work",
  detail: { from: "b-1", to: ["c-1"], method: `m.${id}` },
  ts: 1_000 + ++clock,
  ...extra,
});

/** The tree as nested [kind:id, children] for compact assertions. */
const shape = (nodes: TraceNode[]): unknown[] => nodes.map((n) => [`${n.kind}:${n.id}`, shape(n.children)]);

/** Every node of a forest, depth first, without recursion. */
function all(roots: TraceNode[]): TraceNode[] {
  const out: TraceNode[] = [];
  const stack = [...roots].reverse();
  for (let n = stack.pop(); n; n = stack.pop()) {
    out.push(n);
    for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i] as TraceNode);
  }
  return out;
}

describe("buildTraceTree", () => {
  it("nests event → call → events and messages, whatever the input order", () => {
    const placed = event("placed");
    const reserve = call("reserve", "placed");
    const reserved = event("reserved", "reserve");
    const notify = message("notify", "reserve");
    const shipped = event("shipped", "reserved");
    const other = event("other");
    const input = [shipped, notify, other, reserved, reserve, placed];
    const expected = [
      [
        "event:placed",
        [
          [
            "call:reserve",
            [
              ["event:reserved", [["event:shipped", []]]],
              ["message:notify", []],
            ],
          ],
        ],
      ],
      ["event:other", []],
    ];
    expect(shape(buildTraceTree(input))).toEqual(expected);
    expect(shape(buildTraceTree([...input].reverse()))).toEqual(expected);
    // The nodes keep their fields; the input is not modified.
    const [root] = buildTraceTree(input);
    expect(root?.children[0]).toMatchObject({ kind: "call", detail: { method: "m.reserve", outcome: "ok" } });
    expect(input.every((n) => !("children" in n))).toBe(true);
  });

  it("treats a self-cause and an unknown cause as no cause", () => {
    const self = event("self", "self");
    const orphan = event("orphan", "call-not-in-set");
    const child = event("child", "self");
    expect(shape(buildTraceTree([child, orphan, self]))).toEqual([
      ["event:self", [["event:child", []]]],
      ["event:orphan", []],
    ]);
  });

  it("cuts a 3-node cycle at its earliest node, keeping every node once", () => {
    const a = event("a", "c");
    const b = call("b", "a");
    const c = message("c", "b");
    const hanger = event("hanger", "b");
    const tree = buildTraceTree([c, hanger, b, a]);
    expect(shape(tree)).toEqual([
      [
        "event:a",
        [
          [
            "call:b",
            [
              ["message:c", []],
              ["event:hanger", []],
            ],
          ],
        ],
      ],
    ]);
    // The earliest node is the cut, whichever member it is.
    const late = buildTraceTree([
      { ...a, ts: 50 },
      { ...b, ts: 10 },
      { ...c, ts: 30 },
    ]);
    expect(shape(late)).toEqual([["call:b", [["message:c", [["event:a", []]]]]]]);
  });

  it("cuts each of several cycles, including a cycle hanging nothing", () => {
    const nodes = [event("x", "y"), event("y", "x"), event("p", "q"), event("q", "r"), event("r", "p")];
    const tree = buildTraceTree(nodes);
    expect(shape(tree)).toEqual([
      ["event:x", [["event:y", []]]],
      // p ← q ← r ← p: cut at p, so r (caused by p) hangs under it, and q under r.
      ["event:p", [["event:r", [["event:q", []]]]]],
    ]);
    expect(all(tree)).toHaveLength(nodes.length);
  });

  it("keeps the first of several nodes with one id", () => {
    const first = event("dup", undefined, { ts: 20 });
    const second = call("dup", undefined, { ts: 10 });
    const child = event("child", "dup", { ts: 30 });
    const tree = buildTraceTree([first, second, child]);
    expect(shape(tree)).toEqual([["event:dup", [["event:child", []]]]]);
    expect(tree[0]?.ts).toBe(20);
  });

  it("orders roots and siblings by ts, then stream and seq for events, then id", () => {
    const nodes: TraceItem[] = [
      event("late", undefined, { ts: 9 }),
      event("b-seq2", undefined, { ts: 5, stream: "b", seq: 2 }),
      event("b-seq1", undefined, { ts: 5, stream: "b", seq: 1 }),
      event("a-seq7", undefined, { ts: 5, stream: "a", seq: 7 }),
      message("msg-z", undefined, { ts: 5 }),
      call("call-y", undefined, { ts: 5 }),
      event("early", undefined, { ts: 1 }),
    ];
    expect(buildTraceTree(nodes).map((n) => n.id)).toEqual([
      "early",
      "call-y",
      "msg-z",
      "a-seq7",
      "b-seq1",
      "b-seq2",
      "late",
    ]);
    const parent = call("parent", undefined, { ts: 0 });
    const kids: TraceItem[] = nodes.map((n) => ({ ...n, causationId: "parent" }));
    expect(buildTraceTree([...kids.reverse(), parent])[0]?.children.map((n) => n.id)).toEqual([
      "early",
      "call-y",
      "msg-z",
      "a-seq7",
      "b-seq1",
      "b-seq2",
      "late",
    ]);
  });

  it("builds a chain of 100k without recursion", () => {
    const n = 100_000;
    const chain: TraceItem[] = [];
    for (let i = 0; i < n; i++) chain.push(event(`n${i}`, i > 0 ? `n${i - 1}` : undefined, { ts: i, seq: i + 1 }));
    chain.reverse();
    const tree = buildTraceTree(chain);
    expect(tree).toHaveLength(1);
    let depth = 0;
    for (let node: TraceNode | undefined = tree[0]; node; node = node.children[0]) {
      if (node.id !== `n${depth}` || node.children.length > 1)
        expect([node.id, node.children.length]).toBe([`n${depth}`, 1]);
      depth++;
    }
    expect(depth).toBe(n);
    // And as one big cycle: the earliest node becomes the root, nothing is lost.
    const ring = chain.map((node) => (node.id === "n0" ? { ...node, causationId: `n${n - 1}` } : node));
    const cut = buildTraceTree(ring);
    expect(cut.map((r) => r.id)).toEqual(["n0"]);
    expect(all(cut)).toHaveLength(n);
  });

  it("is empty for no nodes", () => {
    expect(buildTraceTree([])).toEqual([]);
  });
});

describe("trace ids", () => {
  it("uses a UUID's own hex as the trace id", () => {
    expect(traceIdOf("0190F2B4-7C3A-7D2E-9A1B-3C4D5E6F7A8B")).toBe("0190f2b47c3a7d2e9a1b3c4d5e6f7a8b");
    expect(traceIdOf("0190f2b47c3a7d2e9a1b3c4d5e6f7a8b")).toBe("0190f2b47c3a7d2e9a1b3c4d5e6f7a8b");
  });

  it("hashes any other string into 32 hex digits, deterministically", () => {
    const ids = ["order-1", "order-2", "x", "é✓", "00000000-0000-0000-0000-000000000000"].map(traceIdOf);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids[4]).not.toBe("0".repeat(32)); // the all-zero trace id is invalid in W3C
    expect(traceIdOf("order-1")).toBe(ids[0]);
  });

  it("formats a traceparent: version 00, trace id, span id, sampled", () => {
    expect(traceparentFor("order-1", "00f067aa0ba902b7")).toBe(`00-${traceIdOf("order-1")}-00f067aa0ba902b7-01`);
    const a = traceparentFor("order-1");
    const b = traceparentFor("order-1");
    expect(a).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(a.split("-")[1]).toBe(b.split("-")[1]);
    expect(a.split("-")[2]).not.toBe(b.split("-")[2]);
    expect(a.split("-")[2]).not.toBe("0".repeat(16));
  });
});
