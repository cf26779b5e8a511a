import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "protocol/**/*.test.ts",
      "client/**/*.test.ts",
      "cli/**/*.test.ts",
      "party/**/*.test.ts",
      "test/**/*.test.ts",
    ],
    // Builds dist/ first: some tests run the compiled CLI and the packed package.
    globalSetup: ["test/build.global.ts"],
    // Each integration file starts its own partykit dev (workerd); two cores fit two at a time.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 90_000,
    // The JSON report feeds the one-line summary .ci/run prints (scripts/test-summary.mjs).
    reporters: ["default", ["json", { outputFile: "reports/vitest.json" }]],
  },
});
