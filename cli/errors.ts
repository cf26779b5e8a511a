/**
 * The CLI's own failures and how any failure reads on stderr. Usage errors never get here:
 * commander prints those itself and `main` exits 2.
 */
import { CrosstalkError } from "../client/node.ts";
import { printable } from "./format.ts";

/** A runtime failure with a message for the user (a missing key, nothing traced): exit 1, no code prefix. */
export class CliFailure extends Error {}

/** How a failure reads on stderr: `CODE: message` for coded errors, escaped for the terminal. */
export function describeError(error: unknown): string {
  if (error instanceof CrosstalkError) return `${error.code}: ${printable(error.message)}`;
  if (error instanceof CliFailure) return printable(error.message);
  if (error instanceof Error) return `error: ${printable(error.message)}`;
  return `error: ${printable(String(error))}`;
}
