/**
 * What the CLI prints, as pure functions of their input (no I/O but the two writers at the
 * end): event lines, tables, the progress bar, trace trees. Everything that came over the
 * wire passes through {@link printable} so a room or an agent cannot drive the terminal.
 */
import type { AgentInfo, Json, StoredEvent, TraceNode } from "../client/node.ts";
import type { Output } from "./io.ts";

type Paint = Record<"dim" | "bold" | "cyan" | "green" | "yellow", (s: string) => string>;
const sgr = (open: number) => (s: string) => `\u001b[${open}m${s}\u001b[0m`;
const COLORS: Paint = { dim: sgr(2), bold: sgr(1), cyan: sgr(36), green: sgr(32), yellow: sgr(33) };
const PLAIN: Paint = { dim: (s) => s, bold: (s) => s, cyan: (s) => s, green: (s) => s, yellow: (s) => s };

/** Colors only on a terminal, and never with NO_COLOR set or TERM=dumb. */
export function useColor(stream: { isTTY?: boolean }, env: Record<string, string | undefined>): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR && env.TERM !== "dumb";
}

/** Escapes control characters so that text from the room cannot drive the terminal. */
export function printable(text: string): string {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0) as number;
    out += c < 0x20 || (c >= 0x7f && c < 0xa0) ? `\\u${c.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}

/** One line per event: seq, room time (UTC), type, source, compact JSON data. */
export function formatEvent(event: StoredEvent, opts: { color?: boolean; maxData?: number } = {}): string {
  const p = opts.color ? COLORS : PLAIN;
  let data = JSON.stringify(event.data) ?? "null";
  if (opts.maxData !== undefined && data.length > opts.maxData) data = `${data.slice(0, opts.maxData - 1)}…`;
  return [
    p.dim(String(event.seq).padStart(6)),
    p.dim(new Date(event.ts).toISOString()),
    p.cyan(event.type),
    p.green(printable(event.source)),
    data,
  ].join("  ");
}

/** A plain text table: columns padded to their widest cell, two spaces apart. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  return [headers, ...rows]
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatAgents(agents: AgentInfo[]): string {
  return formatTable(
    ["AGENT", "ROLE", "CONNECTED", "METHODS", "STATUS"],
    agents.map((a) => [
      a.agent,
      a.role,
      new Date(a.connectedAt).toISOString(),
      a.methods.join(","),
      Object.keys(a.status).length > 0 ? JSON.stringify(a.status) : "",
    ]),
  );
}

/** `[█████░░░░░]  50% 5/10` */
export function renderProgress(done: number, total: number, width = 30): string {
  const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(ratio * width);
  return `[${"█".repeat(filled)}${"░".repeat(width - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}% ${done}/${total}`;
}

// ---------------------------------------------------------------------------------------
// Trace trees (pure)

/** A detail value from the wire as text (lists comma-separated), escaped for the terminal. */
function detailText(value: Json | undefined): string {
  if (value === undefined || value === null) return "?";
  if (typeof value === "string") return printable(value);
  if (Array.isArray(value)) return value.length > 0 ? value.map(detailText).join(", ") : "(nobody)";
  if (typeof value === "object") return printable(JSON.stringify(value));
  return printable(String(value));
}

/** One line of a trace: an event, a call or a message. */
function traceLabel(node: TraceNode, showStream: boolean): string {
  const d = node.detail;
  if (node.kind === "event")
    return `${showStream ? detailText(d.stream) : ""}#${detailText(d.seq)} ${detailText(d.type)} (${detailText(d.source)})`;
  if (node.kind === "call")
    return `call ${detailText(d.method)} ${detailText(d.from)} → ${detailText(d.to)} ${detailText(d.outcome)} ${detailText(d.ms)}ms`;
  return `message ${detailText(d.method)} ${detailText(d.from)} → ${detailText(d.to)}`;
}

/** Every node of a forest, depth first, without recursion. */
function* walkTrace(roots: readonly TraceNode[]): Generator<TraceNode> {
  const stack = [...roots];
  for (let node = stack.pop(); node; node = stack.pop()) {
    yield node;
    for (const child of node.children) stack.push(child);
  }
}

/**
 * Renders a trace forest as indented lines, `├─`/`└─` for children:
 * `#3 deal.created (sales-1)` (`main#3 …` when the tree spans several streams),
 * `call review sales-1 → legal-1 ok 12ms`, `message notify legal-1 → mailer-1`.
 */
export function renderTraceTree(roots: readonly TraceNode[], opts: { showStream?: boolean } = {}): string[] {
  let showStream = opts.showStream;
  if (showStream === undefined) {
    const streams = new Set<Json>();
    for (const node of walkTrace(roots)) if (node.kind === "event") streams.add(node.detail.stream ?? null);
    showStream = streams.size > 1;
  }
  const lines: string[] = [];
  // Iterative depth-first walk: [node, prefix for its line, prefix for its children].
  const stack: [TraceNode, string, string][] = [];
  for (const root of [...roots].reverse()) stack.push([root, "", ""]);
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [node, linePrefix, childPrefix] = item;
    lines.push(linePrefix + traceLabel(node, showStream));
    node.children.forEach((_, i, children) => {
      const child = children[children.length - 1 - i] as TraceNode;
      const lastChild = i === 0;
      stack.push([child, childPrefix + (lastChild ? "└─ " : "├─ "), childPrefix + (lastChild ? "   " : "│  ")]);
    });
  }
  return lines;
}

// ---------------------------------------------------------------------------------------
// Writing

/** Pretty JSON on its own lines: what `state`, `call`, `publish` and `--json` print. */
export function printJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Writes a line; the promise (when any) resolves once the stream wants more. */
export function writeLine(out: Output, line: string): Promise<void> | undefined {
  if (out.write(`${line}\n`)) return undefined;
  return new Promise((resolve) => out.once("drain", () => resolve()));
}
