#!/usr/bin/env node
/**
 * Prints one closing line for the whole `npm test` run — `tests: N passed, N failed` — from
 * the JSON reports vitest and Playwright write into reports/ (not test-results/: Playwright
 * empties that folder when it starts). Exits 1 when a report is
 * missing or counts no test at all, so a run that silently tested nothing cannot pass.
 */
import { readFileSync } from "node:fs";

const read = (file) => {
  try {
    return JSON.parse(readFileSync(new URL(`../reports/${file}`, import.meta.url), "utf8"));
  } catch {
    return null;
  }
};

const vitest = read("vitest.json");
const playwright = read("playwright.json");
if (!vitest || !playwright) {
  console.error(`missing test report: ${!vitest ? "vitest" : "playwright"}`);
  process.exit(1);
}
const passed = vitest.numPassedTests + (playwright.stats?.expected ?? 0);
const failed = vitest.numFailedTests + (playwright.stats?.unexpected ?? 0) + (playwright.stats?.flaky ?? 0);
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(passed > 0 && failed === 0 ? 0 : 1);
