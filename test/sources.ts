/**
 * Reading the repository's own source files, for the tests that guard its import rules
 * (`isomorphic.test.ts`, `boundaries.test.ts`). A regex is enough: the code is formatted by
 * Biome, so every import and re-export has the shape these match.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "..");

/** Every module a source file imports or re-exports, statically or dynamically. */
export function importsOf(file: string): string[] {
  const source = readFileSync(join(ROOT, file), "utf8");
  const specs: string[] = [];
  for (const [, spec] of source.matchAll(/(?:import|export)[^"']*?from\s*["']([^"']+)["']/g))
    if (spec) specs.push(spec);
  for (const [, spec] of source.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)) if (spec) specs.push(spec);
  return specs;
}

/** The non-test `.ts` files of a top-level folder, as `folder/file.ts`. */
export function sourcesOf(folder: string): string[] {
  return readdirSync(join(ROOT, folder))
    .filter((file) => file.endsWith(".ts") && !file.endsWith(".test.ts"))
    .map((file) => `${folder}/${file}`);
}
