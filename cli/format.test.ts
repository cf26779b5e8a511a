/** The CLI's pure output: event lines, tables, the progress bar, errors and trace trees. */
import { describe, expect, it } from "vitest";
import type { StoredEvent, TraceNode } from "../client/node.ts";
import { CrosstalkError } from "../client/node.ts";
import { describeError, RoomError } from "./errors.ts";
import { formatEvent, formatTable, printable, renderProgress, renderTraceTree, useColor } from "./format.ts";

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
    expect(describeError(new RoomError("PARTYKIT_MISSING", "install it"))).toBe("PARTYKIT_MISSING: install it");
  });
});

describe("renderTraceTree", () => {
  let clock = 0;
  const node = (
    kind: TraceNode["kind"],
    id: string,
    detail: TraceNode["detail"],
    children: TraceNode[] = [],
  ): TraceNode => ({ kind, id, correlationId: "work", detail, ts: ++clock, children });
  const event = (seq: number, type: string, children: TraceNode[] = [], stream = "main") =>
    node("event", `e${seq}`, { stream, seq, type, source: "a-1" }, children);

  it("draws events, calls and messages as an indented tree with ├─ and └─", () => {
    const roots = [
      event(1, "order.placed", [
        node("call", "c1", { from: "planner", to: "stock", method: "reserve", outcome: "ok", ms: 12 }, [
          event(2, "stock.reserved", [event(4, "stock.counted")]),
          node("message", "m1", { from: "stock", to: ["mailer-1", "mailer-2"], method: "notify" }),
        ]),
        event(3, "order.noted"),
      ]),
      node("call", "c2", { from: "a", to: "b", method: "fail", outcome: "HANDLER_ERROR", ms: 0 }),
    ];
    expect(renderTraceTree(roots)).toEqual([
      "#1 order.placed (a-1)",
      "├─ call reserve planner → stock ok 12ms",
      "│  ├─ #2 stock.reserved (a-1)",
      "│  │  └─ #4 stock.counted (a-1)",
      "│  └─ message notify stock → mailer-1, mailer-2",
      "└─ #3 order.noted (a-1)",
      "call fail a → b HANDLER_ERROR 0ms",
    ]);
  });

  it("prefixes the stream when the tree spans several streams", () => {
    const roots = [event(9, "t.orig", [event(1, "t.dead", [], "main.dlq")])];
    expect(renderTraceTree(roots)).toEqual(["main#9 t.orig (a-1)", "└─ main.dlq#1 t.dead (a-1)"]);
    expect(renderTraceTree(roots, { showStream: false })).toEqual(["#9 t.orig (a-1)", "└─ #1 t.dead (a-1)"]);
    // Calls and messages have no stream: one stream of events is no prefix.
    const one = [event(1, "t.a", [node("call", "c", { from: "x", to: "y", method: "m", outcome: "ok", ms: 1 })])];
    expect(renderTraceTree(one)[0]).toBe("#1 t.a (a-1)");
  });

  it("escapes control characters in everything from the wire", () => {
    const bad = "x\u001b]0;pwned\u0007";
    const lines = renderTraceTree([
      node("event", "e", { stream: bad, seq: 1, type: bad, source: bad }, [
        node("call", "c", { from: bad, to: bad, method: bad, outcome: bad, ms: 1 }),
        node("message", "m", { from: bad, to: [bad], method: bad }),
      ]),
      node("event", "e2", { stream: "main", seq: 2, type: "t", source: "s" }),
    ]);
    const safe = "x\\u001b]0;pwned\\u0007";
    expect(lines).toEqual([
      `${safe}#1 ${safe} (${safe})`,
      `├─ call ${safe} ${safe} → ${safe} ${safe} 1ms`,
      `└─ message ${safe} ${safe} → ${safe}`,
      "main#2 t (s)",
    ]);
    expect(lines.join("")).not.toContain("\u001b");
    expect(lines.join("")).not.toContain("\u0007");
  });

  it("renders missing or odd details without failing", () => {
    expect(
      renderTraceTree([
        node("call", "c", { from: "a" }),
        node("message", "m", { from: "a", to: [], method: { odd: 1 } }),
      ]),
    ).toEqual(["call ? a → ? ? ?ms", 'message {"odd":1} a → (nobody)']);
  });

  it("handles a deep chain without recursion", () => {
    const root = event(0, "t.n0");
    let tip = root;
    for (let i = 1; i < 20_000; i++) {
      const next = event(i, `t.n${i}`);
      tip.children.push(next);
      tip = next;
    }
    const lines = renderTraceTree([root]);
    expect(lines).toHaveLength(20_000);
    expect(lines[2]).toBe("   └─ #2 t.n2 (a-1)");
    expect(lines[19_999]).toBe(`${"   ".repeat(19_998)}└─ #19999 t.n19999 (a-1)`);
  });
});
