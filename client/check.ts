/**
 * Checking what a caller hands the client API: one helper instead of a guard per argument,
 * so every bad argument fails the same way, at once, with a typed error.
 * Not re-exported from the package entry point.
 */
import type { z } from "zod";
import { CrosstalkError, type ErrorCode } from "../protocol/index.ts";

/** A short rendering of a refused value for the message: names and numbers, not whole objects. */
const preview = (value: unknown): string =>
  typeof value === "string" || typeof value === "number" ? ` ${JSON.stringify(value).slice(0, 140)}` : "";

/**
 * Parses `value` with `schema` and returns the parsed value, or throws `code` (default
 * INVALID_ARGUMENT) saying which argument (`what`, e.g. "stream name") was invalid and why,
 * with the zod issues in `details`.
 */
export function check<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what: string,
  code: ErrorCode = "INVALID_ARGUMENT",
): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues;
  throw new CrosstalkError(
    code,
    `invalid ${what}${preview(value)}: ${issues[0]?.message ?? "fails its schema"}`,
    JSON.parse(JSON.stringify(issues)),
  );
}
