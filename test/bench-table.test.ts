/**
 * The README's benchmark table is generated from bench/results.json (a complete full run of
 * `npm run bench` writes both); this fails when someone edits one without the other.
 */
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { README, readReport, withBenchTable } from "../scripts/bench-table.ts";

it("README.md's benchmark table is what bench/results.json says", () => {
  const current = readFileSync(README, "utf8");
  // On failure: node --import tsx scripts/bench-table.ts (or a complete `npm run bench`).
  expect(current === withBenchTable(current, readReport()), "README.md's benchmark table is stale").toBe(true);
});
