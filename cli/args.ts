/**
 * The CLI's argument parsers. Each one turns a bad value into commander's
 * `InvalidArgumentError`, which `main` reports as a usage error (exit 2) before anything
 * connects: the same rules the room applies (names, patterns, event types come from the
 * protocol's zod schemas), checked where the user can still fix the command line.
 */
import { InvalidArgumentError } from "commander";
import { eventTypeSchema, methodSchema, nameSchema, patternSchema } from "../protocol/index.ts";

export const nameArg =
  (what: string) =>
  (value: string): string => {
    if (!nameSchema.safeParse(value).success)
      throw new InvalidArgumentError(`invalid ${what} name: use [A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}`);
    return value;
  };

export const collectNames = (value: string, previous: string[]): string[] => [...previous, nameArg("stream")(value)];

export const idArg =
  (what: string) =>
  (value: string): string => {
    if (value.length === 0 || value.length > 128) throw new InvalidArgumentError(`a ${what} has 1 to 128 characters`);
    return value;
  };

export function patternArg(value: string): string {
  if (!patternSchema.safeParse(value).success)
    throw new InvalidArgumentError("not a NATS-style pattern (e.g. deal.*, deal.>, >)");
  return value;
}

export function eventTypeArg(value: string): string {
  if (!eventTypeSchema.safeParse(value).success)
    throw new InvalidArgumentError("an event type is dotted tokens like deal.closed");
  return value;
}

export function methodArg(value: string): string {
  if (!methodSchema.safeParse(value).success) throw new InvalidArgumentError("not a valid method name");
  return value;
}

/** Parses a JSON command-line argument. */
export function jsonArg(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new InvalidArgumentError(`not valid JSON (${(error as Error).message})`);
  }
}

/** An integer option parser with a lower bound. */
export const intArg =
  (min: number) =>
  (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return n;
  };

/** `--from`: `start`, `end`, a seq (>= 1) or an ISO 8601 time. */
export function parseFrom(value: string): "start" | "end" | number | Date {
  if (value === "start" || value === "end") return value;
  if (/^\d+$/.test(value)) return intArg(1)(value);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw new InvalidArgumentError("expected start, end, a seq (>= 1) or an ISO time like 2025-01-31T12:00:00Z");
}

/** A TCP port to listen on: 1 to 65535. */
export function portArg(value: string): number {
  const port = intArg(1)(value);
  if (port > 65_535) throw new InvalidArgumentError("expected a port from 1 to 65535");
  return port;
}

/**
 * `--var KEY=VALUE`, repeatable: a variable for the room (`room.env`), e.g.
 * `CROSSTALK_LOG_WINDOW=50000`. Keys are identifiers so they survive every shell and
 * partykit's own `KEY=VALUE` split; the value is everything after the first `=`.
 */
export function collectVars(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf("=");
  const key = eq > 0 ? value.slice(0, eq) : "";
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new InvalidArgumentError("expected KEY=VALUE with KEY like NAME_1");
  return { ...previous, [key]: value.slice(eq + 1) };
}

/** A PartyKit project name: it becomes part of the URL (`<name>.<user>.partykit.dev`). */
export function projectNameArg(value: string): string {
  if (!/^[a-zA-Z0-9-]{1,63}$/.test(value))
    throw new InvalidArgumentError("a project name has 1 to 63 letters, digits and dashes");
  return value;
}
