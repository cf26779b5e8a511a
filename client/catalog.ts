/**
 * Typed events: a catalog of event types with their zod schemas and schema versions.
 *
 *   const events = defineEvents({
 *     "deal.closed": z.object({ dealId: z.string(), amount: z.number() }),
 *     "deal.created": { schema: DealV2, version: 2, upcast: { 1: (v1) => ({ ...v1, currency: "USD" }) } },
 *   });
 *   const typed = team.events(events);
 *   await typed.publish("deal.closed", { dealId: "D1", amount: 5 });   // checked at compile and run time
 *
 * Publishing validates and stamps `v` with the current version. On delivery, an event of an
 * older version is lifted by the upcasters (v → v+1, one step at a time), then validated; an
 * event that still fails goes to the dead-letter stream with the zod issues instead of
 * reaching the handler.
 */
import type { z } from "zod";
import { CrosstalkError, type Json, type StoredEvent } from "../protocol/index.ts";
import { check } from "./check.ts";

export type EventSpec<S extends z.ZodType = z.ZodType> =
  | S
  | {
      schema: S;
      /** The current schema version (default 1). */
      version?: number;
      /** `upcast[n]` turns version n data into version n+1 data. */
      upcast?: Record<number, (data: unknown) => unknown>;
    };

export type EventCatalog<T extends Record<string, z.ZodType> = Record<string, z.ZodType>> = {
  readonly entries: {
    [K in keyof T]: { schema: T[K]; version: number; upcast: Record<number, (data: unknown) => unknown> };
  };
};

type SchemaOf<E> = E extends { schema: infer S extends z.ZodType } ? S : E extends z.ZodType ? E : never;

export function defineEvents<D extends Record<string, EventSpec>>(
  specs: D,
): EventCatalog<{ [K in keyof D]: SchemaOf<D[K]> }> {
  const entries: Record<
    string,
    { schema: z.ZodType; version: number; upcast: Record<number, (data: unknown) => unknown> }
  > = {};
  for (const [type, spec] of Object.entries(specs)) {
    const full = "schema" in spec && !("safeParse" in spec) ? spec : { schema: spec as z.ZodType };
    const version = full.version ?? 1;
    if (!Number.isInteger(version) || version < 1)
      throw new CrosstalkError("INVALID_ARGUMENT", `${type}: version must be an integer >= 1`);
    entries[type] = { schema: full.schema, version, upcast: full.upcast ?? {} };
  }
  return { entries } as EventCatalog<{ [K in keyof D]: SchemaOf<D[K]> }>;
}

export type Decoded = { ok: true; event: StoredEvent } | { ok: false; error: string; issues?: Json };

/** Lifts `event` to its current version and validates it; events of unknown types pass through. */
export function decodeEvent(catalog: EventCatalog, event: StoredEvent): Decoded {
  const entry = catalog.entries[event.type];
  if (!entry) return { ok: true, event };
  let data: unknown = event.data;
  let v = event.v ?? 1;
  if (v > entry.version)
    return { ok: false, error: `${event.type} v${v} is newer than this agent's v${entry.version}` };
  try {
    while (v < entry.version) {
      const up = entry.upcast[v];
      if (!up) return { ok: false, error: `${event.type}: no upcaster from v${v}` };
      data = up(data);
      v++;
    }
  } catch (error) {
    return { ok: false, error: `${event.type}: upcaster from v${v} failed: ${(error as Error).message}` };
  }
  const parsed = entry.schema.safeParse(data);
  if (!parsed.success) {
    return {
      ok: false,
      error: `${event.type} fails its schema`,
      issues: JSON.parse(JSON.stringify(parsed.error.issues)) as Json,
    };
  }
  return { ok: true, event: { ...event, data: parsed.data as StoredEvent["data"], v } };
}

/** Validates data for publishing; returns the version to stamp. */
export function encodeEvent(catalog: EventCatalog, type: string, data: unknown): { data: unknown; v: number } {
  const entry = catalog.entries[type];
  if (!entry) throw new CrosstalkError("INVALID_ARGUMENT", `event type ${type} is not in the catalog`);
  return { data: check(entry.schema, data, `${type} data`), v: entry.version };
}
