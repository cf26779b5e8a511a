/**
 * Shapes shared by several frames: events, roster entries, consumer positions, call
 * targets and trace context.
 */
import { z } from "zod";
import { eventTypeSchema, methodSchema, nameSchema } from "./names.ts";

/** Any JSON value, as zod types it. */
export type Json = z.core.util.JSONType;

/** A JSON object: free-form fields (an agent's status, an entity, a trace node's detail). */
export const jsonRecordSchema = z.record(z.string(), z.json());

/** W3C Trace Context `traceparent`: version-traceid-parentid-flags. */
export const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
export const traceparentSchema = z.string().regex(TRACEPARENT);

/** What a publisher sends for one event. */
export const eventInputSchema = z.object({
  /** Client-generated, sortable (UUIDv7); the dedupe key. */
  id: z.string().min(1).max(128),
  type: eventTypeSchema,
  data: z.json(),
  /** Schema version of `data`; upcasters lift old versions on read. */
  v: z.number().int().min(1).optional(),
  /** Ordering key for consumer groups (e.g. the deal id). */
  key: z.string().max(256).optional(),
  causationId: z.string().max(128).optional(),
  correlationId: z.string().max(128).optional(),
  traceparent: traceparentSchema.optional(),
});
export type EventInput = z.infer<typeof eventInputSchema>;

/** An event as the room stored it: the input plus what the room stamped. */
export const storedEventSchema = eventInputSchema.extend({
  stream: nameSchema,
  /** Gapless per stream, from 1. */
  seq: z.number().int().min(1),
  /** Room clock, ms since the epoch. */
  ts: z.number(),
  /** The publishing connection's agent id, stamped by the room. */
  source: z.string(),
});
export type StoredEvent = z.infer<typeof storedEventSchema>;

/**
 * What a served method is, announced with `rpc.handle` for the A2A gateway's cards and other
 * tools: a description, JSON Schemas of its input and output (from the zod contract), and
 * `oneWay` for fire-and-forget methods (the gateway `send`s them and acknowledges at once).
 */
export const methodInfoSchema = z.object({
  description: z.string().max(2000).optional(),
  /** A JSON Schema (an object; frames are JSON, so it holds only JSON). */
  input: z.looseObject({}).optional(),
  output: z.looseObject({}).optional(),
  oneWay: z.boolean().optional(),
});
export type MethodInfo = z.infer<typeof methodInfoSchema>;

export const agentInfoSchema = z.object({
  agent: nameSchema,
  role: nameSchema,
  connectedAt: z.number(),
  /** Free-form fields the agent sets about itself (`team.setStatus`). */
  status: jsonRecordSchema,
  /** Methods the agent serves, for routing. */
  methods: z.array(methodSchema),
  /** What the agent told about its methods (`rpc.handle` `info`): for tools that list them (MCP, A2A cards). */
  info: z.record(methodSchema, methodInfoSchema).optional(),
});
export type AgentInfo = z.infer<typeof agentInfoSchema>;

/** Names a request (or a call) so its answer can find it; echoed in error frames. */
export const refSchema = z.string().min(1).max(64);

/** Lease names are free-form (`deal:DEAL-001`, `projection:deals`) but bounded. */
export const leaseNameSchema = z.string().min(1).max(256);
export const leaseTtlSchema = z
  .number()
  .int()
  .min(10)
  .max(24 * 3_600_000);

/** Where a call or message goes: one agent, or (any / every) live agent of a role. */
export const targetSchema = z.union([nameSchema, z.object({ role: nameSchema })]);
export type Target = z.infer<typeof targetSchema>;

/** Trace context carried by calls and messages (events carry the same two ids). */
export const traceFields = {
  /** Unique id of this call or message: the `causationId` of whatever its handler does. */
  callId: z.string().min(1).max(128).optional(),
  /** The piece of work this belongs to; propagated unchanged down the causal chain. */
  correlationId: z.string().max(128).optional(),
  /** The event, call or message that caused this one. */
  causationId: z.string().max(128).optional(),
  /** W3C trace context, for OpenTelemetry. */
  traceparent: traceparentSchema.optional(),
};

export const consumerInfoSchema = z.object({
  name: nameSchema,
  kind: z.enum(["durable", "group"]),
  /** Every event up to this seq is handled (0: none yet). */
  acked: z.number().int(),
  /** Events published after `acked`. */
  lag: z.number().int(),
  updatedAt: z.number(),
  /** Groups: live members and events leased right now. */
  members: z.number().int().optional(),
  inFlight: z.number().int().optional(),
});
export type ConsumerInfo = z.infer<typeof consumerInfoSchema>;

/**
 * One item of a piece of work as the room reports it for `trace.get`: an event, a call or a
 * fire-and-forget message (the client arranges them into a tree by `causationId`).
 */
export const traceItemSchema = z.object({
  kind: z.enum(["event", "call", "message"]),
  /** Event id, call id or message id. */
  id: z.string(),
  causationId: z.string().optional(),
  correlationId: z.string(),
  /** Events: stream, seq, type, source. Calls and messages: from, to, method, outcome. */
  detail: jsonRecordSchema,
  ts: z.number(),
});
export type TraceItem = z.infer<typeof traceItemSchema>;
