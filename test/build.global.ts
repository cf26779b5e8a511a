/**
 * Vitest global setup: compiles the package (`npm run build`'s tsc, incremental) before any
 * test runs, so tests that run built code — `node bin/crosstalk.js` (test/cli.test.ts), the
 * package exports (test/package.test.ts), the packed tarball (test/install.test.ts) — test
 * the sources as they are, not a dist/ from an older build. A no-change build takes ~2 s.
 */
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";

export default function setup(): void {
  const root = resolve(import.meta.dirname, "..");
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
    cwd: root,
    stdio: "inherit",
  });
}
