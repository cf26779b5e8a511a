/** The CLI's pure helpers: argument parsing, formatting and trace trees. */
import { describe, expect, it } from "vitest";
import {
  buildTraceTree,
  describeError,
  formatEvent,
  formatTable,
  intArg,
  jsonArg,
  parseFrom,
  printable,
  renderProgress,
  renderTraceTree,
  type TraceNode,
  useColor,
} from "./cli.ts";
import { CrosstalkError } from "./errors.ts";
import type { StoredEvent } from "./protocol.ts";

let nextSeq = 0;
const ev = (id: string, causationId?: string, extra: Partial<StoredEvent> = {}): StoredEvent => {
  const seq = ++nextSeq;
  return {
    id,
    type: `t.${id}`,
    data: {},
    stream: "main",
    seq,
    ts: 1_000 + seq,
    source: "a-1",
    correlationId: "work",
    ...(causationId ? { causationId } : {}),
    ...extra,
  };
};

/** The tree as nested [label, children] for compact assertions. */
const shape = (nodes: TraceNode[]): unknown[] =>
  nodes.map((n) => [n.kind === "call" ? `call:${n.id}` : n.event.id, shape(n.children)]);

describe("parseFrom", () => {
  it("takes start, end, a seq or an ISO time", () => {
    expect(parseFrom("start")).toBe("start");
    expect(parseFrom("end")).toBe("end");
    expect(parseFrom("42")).toBe(42);
    expect(parseFrom("2025-01-31T12:00:00Z")).toEqual(new Date("2025-01-31T12:00:00Z"));
    expect(parseFrom("2025-01-31T12:00:00.250+02:00")).toEqual(new Date("2025-01-31T10:00:00.250Z"));
    expect(parseFrom("2025-01-31")).toEqual(new Date("2025-01-31T00:00:00Z"));
  });

  it("refuses anything else", () => {
    for (const bad of ["0", "-1", "1.5", "yesterday", "", "2025-13-45", "9999999999999999999"]) {
      expect(() => parseFrom(bad), bad).toThrow(/expected/);
    }
  });
});

describe("argument parsers", () => {
  it("jsonArg parses any JSON value and names the problem otherwise", () => {
    expect(jsonArg('{"a":[1,null]}')).toEqual({ a: [1, null] });
    expect(jsonArg('"s"')).toBe("s");
    expect(jsonArg("null")).toBeNull();
    expect(() => jsonArg("{a:1}")).toThrow(/not valid JSON/);
  });

  it("intArg enforces integers and a lower bound", () => {
    expect(intArg(1)("5")).toBe(5);
    expect(intArg(0)("0")).toBe(0);
    for (const bad of ["0", "1e3", "2.5", "x", "", "-3"]) expect(() => intArg(1)(bad), bad).toThrow(/integer >= 1/);
  });
});

describe("formatting", () => {
  const event: StoredEvent = {
    id: "e1",
    type: "deal.closed",
    data: { dealId: "D1", note: "a\nb" },
    stream: "main",
    seq: 7,
    ts: Date.UTC(2025, 0, 31, 12, 0, 0, 5),
    source: "sales-1",
  };

  it("formats an event on one line, colored only when asked", () => {
    expect(formatEvent(event)).toBe(
      '     7  2025-01-31T12:00:00.005Z  deal.closed  sales-1  {"dealId":"D1","note":"a\\nb"}',
    );
    const colored = formatEvent(event, { color: true });
    expect(colored).toContain("\u001b[36mdeal.closed\u001b[0m");
    const sgr = new RegExp(`${String.fromCharCode(27)}\\[\\d+m`, "g");
    expect(colored.replace(sgr, "")).toBe(formatEvent(event));
    expect(formatEvent({ ...event, data: "x".repeat(100) }, { maxData: 10 })).toMatch(/ "xxxxxxxx…$/);
  });

  it("colors only on a terminal without NO_COLOR", () => {
    expect(useColor({ isTTY: true }, {})).toBe(true);
    expect(useColor({ isTTY: false }, {})).toBe(false);
    expect(useColor({}, {})).toBe(false);
    expect(useColor({ isTTY: true }, { NO_COLOR: "1" })).toBe(false);
    expect(useColor({ isTTY: true }, { TERM: "dumb" })).toBe(false);
  });

  it("pads table columns", () => {
    expect(
      formatTable(
        ["A", "LONG HEADER", "C"],
        [
          ["xxxx", "y", ""],
          ["z", "", "w"],
        ],
      ),
    ).toBe(["A     LONG HEADER  C", "xxxx  y", "z                  w"].join("\n"));
  });

  it("renders a progress bar", () => {
    expect(renderProgress(0, 10, 10)).toBe("[░░░░░░░░░░]   0% 0/10");
    expect(renderProgress(5, 10, 10)).toBe("[█████░░░░░]  50% 5/10");
    expect(renderProgress(10, 10, 10)).toBe("[██████████] 100% 10/10");
    expect(renderProgress(0, 0, 4)).toBe("[████] 100% 0/0");
  });

  it("escapes control characters and reports errors by code", () => {
    expect(printable("a\u001b[2Jb\u0007\u009bé")).toBe("a\\u001b[2Jb\\u0007\\u009bé");
    expect(describeError(new CrosstalkError("NO_ROUTE", "agent x is not connected"))).toBe(
      "NO_ROUTE: agent x is not connected",
    );
    expect(describeError(new Error("boom\r"))).toBe("error: boom\\u000d");
  });
});

describe("buildTraceTree", () => {
  it("hangs events under their cause and calls as call nodes, in time order", () => {
    const root = ev("root");
    const child = ev("child", "root");
    const viaCall1 = ev("viaCall1", "call-1");
    const grandchild = ev("grandchild", "child");
    const viaCall2 = ev("viaCall2", "call-1");
    const child2 = ev("child2", "root");
    // Input order does not matter.
    const tree = buildTraceTree([grandchild, viaCall2, child2, root, viaCall1, child]);
    expect(shape(tree)).toEqual([
      [
        "root",
        [
          ["child", [["grandchild", []]]],
          ["child2", []],
        ],
      ],
      [
        "call:call-1",
        [
          ["viaCall1", []],
          ["viaCall2", []],
        ],
      ],
    ]);
  });

  it("keeps every event exactly once: self-causes and cycles are cut", () => {
    const self = ev("self", "self");
    const a = ev("a", "c");
    const b = ev("b", "a");
    const c = ev("c", "b");
    const hanger = ev("hanger", "b");
    const tree = buildTraceTree([self, a, b, c, hanger]);
    expect(shape(tree)).toEqual([
      ["self", []],
      [
        "a",
        [
          [
            "b",
            [
              ["c", []],
              ["hanger", []],
            ],
          ],
        ],
      ],
    ]);
  });

  it("orders by room time across streams and links a dead letter to its event", () => {
    const original = ev("orig", undefined, { ts: 5, seq: 9 });
    const dead = ev("dlq:main:w:9", "orig", { stream: "main.dlq", seq: 1, ts: 6 });
    const tree = buildTraceTree([dead, original]);
    expect(shape(tree)).toEqual([["orig", [["dlq:main:w:9", []]]]]);
    expect(renderTraceTree(tree, { showStream: true })).toEqual([
      "main#9 t.orig (a-1)",
      "└─ main.dlq#1 t.dlq:main:w:9 (a-1)",
    ]);
  });

  it("is empty for no events", () => {
    expect(buildTraceTree([])).toEqual([]);
  });
});

describe("renderTraceTree", () => {
  it("draws an indented tree with ├─ and └─", () => {
    const e1 = ev("e1", "call-9");
    const e2 = ev("e2", "e1");
    const e3 = ev("e3", "e2");
    const e4 = ev("e4", "e1");
    const e5 = ev("e5", "call-9");
    const e6 = ev("e6");
    const lines = renderTraceTree(buildTraceTree([e1, e2, e3, e4, e5, e6]));
    expect(lines).toEqual([
      "call call-9",
      `├─ #${e1.seq} t.e1 (a-1)`,
      `│  ├─ #${e2.seq} t.e2 (a-1)`,
      `│  │  └─ #${e3.seq} t.e3 (a-1)`,
      `│  └─ #${e4.seq} t.e4 (a-1)`,
      `└─ #${e5.seq} t.e5 (a-1)`,
      `#${e6.seq} t.e6 (a-1)`,
    ]);
  });

  it("escapes control characters in ids from the wire", () => {
    const e = ev("e", "bad\u001b]0;pwned\u0007");
    expect(renderTraceTree(buildTraceTree([e]))[0]).toBe("call bad\\u001b]0;pwned\\u0007");
  });

  it("handles a deep chain without recursion", () => {
    const chain = [ev("n0")];
    for (let i = 1; i < 3_000; i++) chain.push(ev(`n${i}`, `n${i - 1}`));
    const lines = renderTraceTree(buildTraceTree(chain));
    expect(lines).toHaveLength(3_000);
    expect(lines[2]).toMatch(/^ {3}└─ #\d+ t\.n2 \(a-1\)$/);
  });
});
