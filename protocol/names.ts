/**
 * Names on the wire: agent ids, roles, namespaces, streams, event types, subscription
 * patterns, method names and the documents a client may open.
 */
import { z } from "zod";

/**
 * The room's audit stream (`party/audit.ts`): security-relevant acts, written by the room
 * only. Every agent's publish to it is refused, whatever the policy grants.
 */
export const AUDIT_STREAM = "_audit";

/** Agent ids, roles, namespaces and stream names share one conservative alphabet. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$/;
export const nameSchema = z.string().regex(NAME, "must match [A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}");
/** Event types are dotted tokens: `deal.closed`. No wildcards: those belong to patterns. */
export const eventTypeSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, "must be dotted tokens like deal.closed")
  .max(200);
/** Subscription patterns, NATS style: `deal.*` matches one token, `deal.>` the rest, `>` all. */
export const patternSchema = z
  .string()
  .regex(/^(>|([A-Za-z0-9_-]+|\*)(\.([A-Za-z0-9_-]+|\*))*(\.>)?)$/, "must be a NATS-style pattern")
  .max(200);
export const methodSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$/, "must be an identifier-like method name");

/** Documents a client may open: shared state namespaces and stream logs. */
export type DocName = `state/${string}` | `log/${string}`;
export const docNameSchema = z
  .string()
  .refine((s) => /^(state|log)\/[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$/.test(s), "must be state/<ns> or log/<stream>")
  .transform((s) => s as DocName);

export const stateDoc = (namespace: string): DocName => `state/${namespace}`;
export const logDoc = (stream: string): DocName => `log/${stream}`;
/** Only the room writes `log/*` documents; clients may write `state/*`. */
export const isWritableByClients = (doc: DocName): boolean => doc.startsWith("state/");

/** NATS-style subject matching: `*` one token, `>` one or more trailing tokens. */
export function matchesPattern(pattern: string, type: string): boolean {
  if (pattern === ">") return true;
  const p = pattern.split(".");
  const t = type.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== "*" && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}
