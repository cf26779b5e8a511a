/**
 * The CLI is a Node user of the library like any other: it reaches it only through
 * `client/node.ts` (and the protocol's schemas, the `crosstalk/protocol` entry), never
 * through the library's internal modules, so what it needs is what the package exports.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";

const CLI = import.meta.dirname;
const ALLOWED = /^\.\.\/(client\/node\.ts|client\/protocol\.ts|protocol\/[\w-]+\.ts)$/;

it("imports the library only through client/node.ts and the protocol", () => {
  const offenders: string[] = [];
  for (const file of readdirSync(CLI)) {
    if (!file.endsWith(".ts") || file.endsWith(".test.ts")) continue;
    const source = readFileSync(join(CLI, file), "utf8");
    const specs = source.matchAll(/(?:import|export)[^"']*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g);
    for (const [, from, dynamic] of specs) {
      const spec = from ?? dynamic;
      if (spec?.startsWith("../") && !ALLOWED.test(spec)) offenders.push(`${file}: ${spec}`);
    }
  }
  expect(offenders).toEqual([]);
});
