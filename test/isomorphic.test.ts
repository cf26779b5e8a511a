/**
 * The client core runs unchanged in Chromium, workerd and Node: it must not import Node
 * built-ins or Node-only packages. Node extras live behind `client/node.ts`; the CLI lives
 * apart, in `cli/`.
 * The workerd and browser tests prove it runs there; this one keeps it that way.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";

const CLIENT = join(import.meta.dirname, "../client");
const NODE_ONLY_FILES = new Set(["node.ts"]);
const NODE_ONLY_MODULES = /^(node:|fs$|path$|os$|child_process$|net$|http$|https$|crypto$|ws$|tsx|commander$)/;

it("has no Node-only imports outside client/node.ts", () => {
  const offenders: string[] = [];
  for (const file of readdirSync(CLIENT)) {
    if (!file.endsWith(".ts") || file.endsWith(".test.ts") || NODE_ONLY_FILES.has(file)) continue;
    const source = readFileSync(join(CLIENT, file), "utf8");
    for (const [, spec] of source.matchAll(/(?:import|export)[^"']*?from\s*["']([^"']+)["']/g)) {
      if (spec && NODE_ONLY_MODULES.test(spec)) offenders.push(`${file}: ${spec}`);
    }
    for (const [, spec] of source.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)) {
      if (spec && NODE_ONLY_MODULES.test(spec)) offenders.push(`${file}: ${spec}`);
    }
  }
  expect(offenders).toEqual([]);
});
