/**
 * Markdown for generated docs (docs/PROTOCOL.md, the README's benchmark table): laid out the
 * way Biome formats it, so a generated file stays stable under `biome format`.
 */

/** A table cell: pipes escaped, one line. */
export const cell = (text: string): string => text.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** A Markdown table with padded columns, as Biome formats it. */
export function markdownTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(3, h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${widths.map((w, i) => (cells[i] ?? "").padEnd(w)).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}
