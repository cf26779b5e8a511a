/**
 * The README's benchmark table, generated from `bench/results.json` (a complete full run of
 * `npm run bench` writes both), never typed by hand:
 *
 *   node --import tsx scripts/bench-table.ts           rewrites the table in README.md
 *   node --import tsx scripts/bench-table.ts --check   exits 1 if the README's table is stale
 *
 * `test/bench-table.test.ts` runs the check through {@link withBenchTable}.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { RESULT_HEADER, type Result, resultRows } from "../bench/lib.ts";
import { cell, markdownTable } from "./markdown.ts";

export const README = fileURLToPath(new URL("../README.md", import.meta.url));
export const RESULTS = fileURLToPath(new URL("../bench/results.json", import.meta.url));
const START = "<!-- bench:start (generated from bench/results.json by scripts/bench-table.ts) -->";
const END = "<!-- bench:end -->";

export type BenchReport = {
  quick: boolean;
  runs: number;
  date: string;
  durationS: number;
  node: string;
  cpus: number;
  cpuModel: string;
  results: Record<string, Result>;
};

/** The table and the line that says which run it comes from. */
export function renderBenchTable(report: BenchReport): string {
  const rows = resultRows(report.results).map((r) => r.map(cell));
  return [
    `One full run (${report.date.slice(0, 10)}, medians of ${report.runs}, ${report.durationS} s, node ${report.node}, ${report.cpus} × ${report.cpuModel}); the ratio is crosstalk ÷ the baseline measured in the same run:`,
    "",
    ...markdownTable(RESULT_HEADER, rows),
  ].join("\n");
}

/** `readme` with the text between the markers replaced by the table of `report`. */
export function withBenchTable(readme: string, report: BenchReport): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md lacks the markers ${START} … ${END}`);
  return `${readme.slice(0, start + START.length)}\n\n${renderBenchTable(report)}\n\n${readme.slice(end)}`;
}

export function readReport(path = RESULTS): BenchReport {
  return JSON.parse(readFileSync(path, "utf8")) as BenchReport;
}

/** Rewrites the README's table from `report`. */
export function writeBenchTable(report: BenchReport): void {
  writeFileSync(README, withBenchTable(readFileSync(README, "utf8"), report));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const report = readReport();
  const current = readFileSync(README, "utf8");
  const next = withBenchTable(current, report);
  if (process.argv.includes("--check")) {
    if (current !== next) {
      console.error("README.md's benchmark table is stale: run `node --import tsx scripts/bench-table.ts`");
      process.exit(1);
    }
  } else {
    writeFileSync(README, next);
    console.log("wrote the benchmark table in README.md");
  }
}
