/**
 * What every command writes to and reads from, passed in rather than taken from `process`
 * so tests run the CLI in-process with their own streams, environment and directory.
 */
import type { Readable, Writable } from "node:stream";

/** A writable with what a terminal stream adds (`process.stdout` has both). */
export type Output = Writable & { isTTY?: boolean; columns?: number };

export type CliIO = {
  stdout: Output;
  stderr: Output;
  /** Where defaults come from (`CROSSTALK_HOST`, `CROSSTALK_TOKEN`, `NO_COLOR`). */
  env: Record<string, string | undefined>;
  /** The user's project: where `dev` resolves `--persist` and `deploy` reads package.json. */
  cwd: string;
  /** What `import` reads (default: `process.stdin`). */
  stdin?: Readable;
  /** Aborting it stops a running `tail` or `dev` as SIGINT does. */
  signal?: AbortSignal;
};
