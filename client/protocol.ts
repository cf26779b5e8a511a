/**
 * The crosstalk wire protocol: every frame, error code and close code, in one place.
 *
 * Both the room (`party/`) and the client (`client/`) import this module; nothing else
 * declares a frame. `docs/PROTOCOL.md` is checked against these schemas by
 * `test/protocol-doc.test.ts`, and `test/fixtures/frames.json` holds golden frames that
 * every future version must still accept.
 *
 * One WebSocket per agent carries two kinds of frame:
 * - text frames: JSON control frames, validated with the zod schemas below;
 * - binary frames: Yjs documents, a y-protocols message inside a small envelope that
 *   names the document (see {@link encodeDocFrame}).
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import { z } from "zod";

/** Bumped when a frame changes incompatibly; sent by the client as the `v` query parameter. */
export const PROTOCOL_VERSION = 1;

/** PartyKit refuses WebSocket messages above 1 MB; we stay under it with margin for framing. */
export const MAX_FRAME_BYTES = 1_000_000;
/** The largest event (its JSON encoding) the room accepts. */
export const MAX_EVENT_BYTES = 256 * 1024;
/** Events in one live-log segment (a nested Y.Array), so an append never walks a long list. */
export const LOG_SEGMENT_SIZE = 1024;
/** The most events one `history` request returns. */
export const MAX_HISTORY_PAGE = 1000;
/** Default number of recent events a stream's live log document keeps; older ones are archived. */
export const DEFAULT_LOG_WINDOW = 10_000;
/** Suffix of a stream's dead-letter stream: `main` → `main.dlq`. */
export const DLQ_SUFFIX = ".dlq";

// ---------------------------------------------------------------------------------------
// Names

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

// ---------------------------------------------------------------------------------------
// Errors

/**
 * Every error the runtime reports, with whether retrying the same request can help.
 * `CrosstalkError.code` is always a key of this table.
 */
export const ERROR_CODES = {
  BAD_FRAME: { retryable: false, doc: "The frame is not valid JSON or does not match its schema. Fix the sender." },
  UNKNOWN_FRAME: { retryable: false, doc: "The frame type is not part of this protocol version. Upgrade the client." },
  INVALID_ARGUMENT: {
    retryable: false,
    doc: "A client API was called with invalid arguments (a bad name, non-JSON data). Fix the call.",
  },
  FORBIDDEN: { retryable: false, doc: "The connection may not do this (e.g. write a room-owned log document)." },
  UNAUTHORIZED: { retryable: false, doc: "The connection is not authenticated for this room." },
  TOO_LARGE: {
    retryable: false,
    doc: "An event or frame exceeds the size limit. Store large blobs elsewhere and publish a reference.",
  },
  NOT_FOUND: { retryable: false, doc: "The named thing (stream, call, document) does not exist." },
  CONFLICT: {
    retryable: false,
    doc: "A precondition failed (expected version or sequence). Re-read and decide again.",
  },
  NO_ROUTE: {
    retryable: false,
    doc: "No connected agent serves this method at this target. Check the roster. With `details.recentlyGone` one left moments ago and is probably reconnecting: calls with `retries` retry it.",
  },
  TARGET_GONE: {
    retryable: true,
    doc: "The callee disconnected before answering. Retrying may reach it or another instance.",
  },
  TIMEOUT: {
    retryable: true,
    doc: "No answer before the deadline. The callee may still have run: retry only with an idempotency key.",
  },
  CANCELLED: { retryable: false, doc: "The caller aborted the call." },
  INVALID_INPUT: { retryable: false, doc: "The callee refused the input as invalid. Fix the input." },
  INVALID_OUTPUT: {
    retryable: false,
    doc: "The callee produced output that fails its contract. Report to the callee's owner.",
  },
  HANDLER_ERROR: {
    retryable: false,
    doc: "The callee's handler threw; the message is passed on, never a remote stack.",
  },
  OVERLOADED: { retryable: true, doc: "Too many calls in flight at the callee or the room. Back off and retry." },
  OFFLINE: { retryable: true, doc: "The connection dropped while the request was in flight; its outcome is unknown." },
  CLOSED: { retryable: false, doc: "The client was closed by its owner." },
  INTERNAL: { retryable: true, doc: "The room hit an unexpected error; nothing was applied." },
} as const satisfies Record<string, { retryable: boolean; doc: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
export const errorCodeSchema = z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]);

/** WebSocket close codes the room uses (4000-4999 is the application range). */
export const CLOSE_CODES = {
  /** The connect URL lacks a valid `agent`/`role`, or names an unsupported protocol version. */
  BadRequest: { code: 4400, reason: "bad request" },
  Unauthorized: { code: 4401, reason: "unauthorized" },
  Forbidden: { code: 4403, reason: "forbidden" },
  /** Another live connection (a different client instance) already is this agent. */
  AgentIdInUse: { code: 4409, reason: "agent id in use" },
  /** The same client instance reconnected; the older socket is closed. */
  Replaced: { code: 4000, reason: "replaced by a newer connection" },
} as const;

/** Close codes after which the client must not reconnect by itself. */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CLOSE_CODES.BadRequest.code,
  CLOSE_CODES.Unauthorized.code,
  CLOSE_CODES.Forbidden.code,
  CLOSE_CODES.AgentIdInUse.code,
]);

// ---------------------------------------------------------------------------------------
// Shared shapes

const jsonRecord = z.record(z.string(), z.json());

/** W3C Trace Context `traceparent`: version-traceid-parentid-flags. */
export const traceparentSchema = z.string().regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);

export const errorBodySchema = z.object({
  code: errorCodeSchema,
  message: z.string(),
  /** Machine-readable extras, e.g. zod issues for a schema failure. */
  details: z.json().optional(),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

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

export const agentInfoSchema = z.object({
  agent: nameSchema,
  role: nameSchema,
  connectedAt: z.number(),
  /** Free-form fields the agent sets about itself (`team.setStatus`). */
  status: jsonRecord,
  /** Methods the agent serves, for routing. */
  methods: z.array(methodSchema),
});
export type AgentInfo = z.infer<typeof agentInfoSchema>;

const ref = z.string().min(1).max(64);

/** Lease names are free-form (`deal:DEAL-001`, `projection:deals`) but bounded. */
export const leaseNameSchema = z.string().min(1).max(256);
const leaseTtl = z
  .number()
  .int()
  .min(10)
  .max(24 * 3_600_000);

/** Where a call or message goes: one agent, or (any / every) live agent of a role. */
export const targetSchema = z.union([nameSchema, z.object({ role: nameSchema })]);
export type Target = z.infer<typeof targetSchema>;

/** Trace context carried by calls and messages (events carry the same two ids). */
const traceFields = {
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

// ---------------------------------------------------------------------------------------
// Client -> room

export const clientFrames = {
  /** Append events to a stream; answered by `publish.ack` or `error` with the same `ref`. */
  publish: z.object({
    type: z.literal("publish"),
    ref,
    stream: nameSchema,
    events: z.array(eventInputSchema).min(1).max(1000),
    /** Optimistic concurrency: refused with CONFLICT unless the stream's last seq is this. */
    expectedLastSeq: z.number().int().min(0).optional(),
  }),
  /** Read a page of a stream's history, archive included; answered by `history.page`. */
  history: z.object({
    type: z.literal("history"),
    ref,
    stream: nameSchema,
    from: z.number().int().min(1),
    /** Last seq wanted (inclusive); default: the head. */
    to: z.number().int().min(1).optional(),
    limit: z.number().int().min(1).max(MAX_HISTORY_PAGE),
  }),
  /** The stored position of a durable consumer; answered by `consumer.state`. */
  "consumer.get": z.object({ type: z.literal("consumer.get"), ref, stream: nameSchema, consumer: nameSchema }),
  /** A durable consumer has handled everything up to `seq`. Stored, not answered. */
  "consumer.ack": z.object({
    type: z.literal("consumer.ack"),
    stream: nameSchema,
    consumer: nameSchema,
    seq: z.number().int().min(0),
  }),
  /** List a stream's durable consumers and groups; answered by `consumers`. */
  "consumers.list": z.object({ type: z.literal("consumers.list"), ref, stream: nameSchema }),
  /** Join a consumer group; the room then leases events with `group.deliver`. Answered by `ok`. */
  "group.join": z.object({
    type: z.literal("group.join"),
    ref,
    stream: nameSchema,
    group: nameSchema,
    pattern: patternSchema,
    /** Where a new group starts: "start", "end" or a seq. Ignored when the group exists. */
    from: z.union([z.literal("start"), z.literal("end"), z.number().int().min(1)]),
    /** Most events leased to this member at once (backpressure). */
    maxAckPending: z.number().int().min(1).max(10_000),
    /** How long a lease lasts before the event goes to another member. */
    ackWaitMs: z.number().int().min(10).max(3_600_000),
    /** Deliveries before an event goes to the dead-letter stream. */
    maxDeliver: z.number().int().min(1).max(1000),
  }),
  "group.leave": z.object({ type: z.literal("group.leave"), stream: nameSchema, group: nameSchema }),
  /** The member handled leased event `seq`. */
  "group.ack": z.object({
    type: z.literal("group.ack"),
    stream: nameSchema,
    group: nameSchema,
    seq: z.number().int().min(1),
  }),
  /** The member failed leased event `seq`; it is redelivered or dead-lettered. */
  "group.nak": z.object({
    type: z.literal("group.nak"),
    stream: nameSchema,
    group: nameSchema,
    seq: z.number().int().min(1),
    error: z.string().max(2000),
    /** Dead-letter now without retrying (the event fails its schema). */
    deadLetter: z.boolean().optional(),
  }),
  /** A conditional write arbitrated by the room; answered by `state.written` or CONFLICT. */
  "state.setIf": z.object({
    type: z.literal("state.setIf"),
    ref,
    ns: nameSchema,
    key: z.string().min(1).max(512),
    /** The entity's current version must be this (0: it must not exist). */
    expectedVersion: z.number().int().min(0),
    value: jsonRecord,
  }),
  /** Take lease `name` for `ttlMs`; answered by `lease.granted` or CONFLICT (held by another agent). */
  "lease.acquire": z.object({ type: z.literal("lease.acquire"), ref, name: leaseNameSchema, ttlMs: leaseTtl }),
  /** Extend a held lease; answered by `lease.granted` or CONFLICT when it was lost. */
  "lease.renew": z.object({
    type: z.literal("lease.renew"),
    ref,
    name: leaseNameSchema,
    token: z.number().int(),
    ttlMs: leaseTtl,
  }),
  /** Give a held lease up; answered by `ok`. */
  "lease.release": z.object({ type: z.literal("lease.release"), ref, name: leaseNameSchema, token: z.number().int() }),
  /** The events, calls and messages of one piece of work; answered by `trace`. */
  "trace.get": z.object({
    type: z.literal("trace.get"),
    ref,
    correlationId: z.string().min(1).max(128),
    /** Streams to search (default: every stream). */
    streams: z.array(nameSchema).max(100).optional(),
  }),
  /** Stop receiving updates for a document opened with a sync step 1. */
  "doc.close": z.object({ type: z.literal("doc.close"), doc: docNameSchema }),
  /** The full list of methods this connection serves (replaces the previous list). */
  "rpc.handle": z.object({
    type: z.literal("rpc.handle"),
    methods: z.array(methodSchema).max(1000),
    /** Calls the room routes here at once; beyond it callers get OVERLOADED. */
    maxInFlight: z.number().int().min(1).max(100_000).optional(),
  }),
  /** Call `method` on `to` (an agent, or any live agent of a role); answered by `rpc.response`. */
  "rpc.call": z.object({
    type: z.literal("rpc.call"),
    ref,
    to: targetSchema,
    method: methodSchema,
    input: z.json(),
    timeoutMs: z.number().int().min(1).max(3_600_000),
    ...traceFields,
    /** With a key, the room runs the call at most once per caller and key, and keeps its result. */
    idempotencyKey: z.string().min(1).max(200).optional(),
  }),
  /** A callee reports progress on call `id`; relayed to the caller. */
  "rpc.progress": z.object({ type: z.literal("rpc.progress"), id: ref, data: z.json() }),
  /** Fire-and-forget: store a message for `to` (kept in its inbox while offline); answered by `rpc.sent`. */
  "rpc.send": z.object({
    type: z.literal("rpc.send"),
    ref,
    /** Client-generated message id: resending it never delivers twice. */
    id: z.string().min(1).max(128),
    to: targetSchema,
    method: methodSchema,
    input: z.json(),
    /** How long an undelivered message waits in an offline agent's inbox. */
    ttlMs: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3_600_000)
      .optional(),
    ...traceFields,
  }),
  /** The recipient has handled message `id`; the room drops it from the inbox. */
  "rpc.message.ack": z.object({ type: z.literal("rpc.message.ack"), id: z.string().min(1).max(128) }),
  /** The caller gives up on call `ref` (timeout or abort). */
  "rpc.cancel": z.object({
    type: z.literal("rpc.cancel"),
    ref,
    /** Why, passed to the callee's abort signal (default CANCELLED). */
    reason: z.enum(["CANCELLED", "TIMEOUT"]).optional(),
  }),
  /** A callee's answer to `rpc.request` `id`. */
  "rpc.result": z.discriminatedUnion("ok", [
    z.object({ type: z.literal("rpc.result"), id: ref, ok: z.literal(true), output: z.json() }),
    z.object({ type: z.literal("rpc.result"), id: ref, ok: z.literal(false), error: errorBodySchema }),
  ]),
  /** Replace this agent's free-form status fields in the roster. */
  "presence.set": z.object({ type: z.literal("presence.set"), status: jsonRecord }),
  /**
   * The agent is leaving on purpose: after every earlier frame, the room takes it off the
   * roster, fails its in-flight calls and frees its id, then answers `ok`; the client closes
   * the socket after the answer, so the id can be used again at once.
   */
  leave: z.object({ type: z.literal("leave"), ref }),
} as const;

export const clientFrameSchema = z.union([
  clientFrames.publish,
  clientFrames.history,
  clientFrames["trace.get"],
  clientFrames["state.setIf"],
  clientFrames["lease.acquire"],
  clientFrames["lease.renew"],
  clientFrames["lease.release"],
  clientFrames["consumer.get"],
  clientFrames["consumer.ack"],
  clientFrames["consumers.list"],
  clientFrames["group.join"],
  clientFrames["group.leave"],
  clientFrames["group.ack"],
  clientFrames["group.nak"],
  clientFrames["doc.close"],
  clientFrames["rpc.handle"],
  clientFrames["rpc.call"],
  clientFrames["rpc.cancel"],
  clientFrames["rpc.result"],
  clientFrames["rpc.progress"],
  clientFrames["rpc.send"],
  clientFrames["rpc.message.ack"],
  clientFrames["presence.set"],
  clientFrames.leave,
]);
export type ClientFrame = z.infer<typeof clientFrameSchema>;
export type ClientFrameType = keyof typeof clientFrames;

// ---------------------------------------------------------------------------------------
// Room -> client

export const roomFrames = {
  /** First frame on every connection: who the room says you are, and who else is here. */
  welcome: z.object({
    type: z.literal("welcome"),
    protocol: z.number().int(),
    agent: nameSchema,
    role: nameSchema,
    serverTime: z.number(),
    roster: z.array(agentInfoSchema),
  }),
  /** Durable acknowledgement of a `publish`, one result per event in order. */
  "publish.ack": z.object({
    type: z.literal("publish.ack"),
    ref,
    results: z.array(z.object({ id: z.string(), seq: z.number().int(), ts: z.number(), duplicate: z.boolean() })),
  }),
  /** A page of history: events in seq order; `next` is where to continue, null at `to`/the head. */
  "history.page": z.object({
    type: z.literal("history.page"),
    ref,
    events: z.array(storedEventSchema),
    head: z.number().int(),
    next: z.number().int().nullable(),
  }),
  /** A durable consumer's stored position (`acked` null: the consumer is new). */
  "consumer.state": z.object({
    type: z.literal("consumer.state"),
    ref,
    stream: nameSchema,
    consumer: nameSchema,
    acked: z.number().int().nullable(),
  }),
  consumers: z.object({
    type: z.literal("consumers"),
    ref,
    stream: nameSchema,
    head: z.number().int(),
    consumers: z.array(consumerInfoSchema),
  }),
  /** A conditional write succeeded: the entity now has this version. */
  "state.written": z.object({ type: z.literal("state.written"), ref, version: z.number().int() }),
  /** The lease is this agent's until `expiresAt` (room clock); `token` grows with every grant (a fencing token). */
  "lease.granted": z.object({
    type: z.literal("lease.granted"),
    ref,
    name: leaseNameSchema,
    token: z.number().int(),
    expiresAt: z.number(),
  }),
  /** A lease this agent held expired (it was not renewed in time). */
  "lease.lost": z.object({ type: z.literal("lease.lost"), name: leaseNameSchema, token: z.number().int() }),
  /** Everything the room knows of one correlation id: events (from the streams) and recent calls and messages. */
  trace: z.object({
    type: z.literal("trace"),
    ref,
    nodes: z.array(
      z.object({
        kind: z.enum(["event", "call", "message"]),
        id: z.string(),
        causationId: z.string().optional(),
        correlationId: z.string(),
        detail: jsonRecord,
        ts: z.number(),
      }),
    ),
  }),
  /** A request without a result succeeded. */
  ok: z.object({ type: z.literal("ok"), ref }),
  /** A leased event for a consumer group member. Answer with `group.ack` or `group.nak`. */
  "group.deliver": z.object({
    type: z.literal("group.deliver"),
    stream: nameSchema,
    group: nameSchema,
    event: storedEventSchema,
    /** 1 on first delivery. */
    deliveries: z.number().int().min(1),
  }),
  /** A request failed, or a frame was refused. `ref` names the request when there is one. */
  error: z.object({
    type: z.literal("error"),
    ref: z.string().optional(),
    /** For refused binary frames: the document concerned. */
    doc: z.string().optional(),
    error: errorBodySchema,
  }),
  /** A call for this agent to run. Answer with `rpc.result` and the same `id`. */
  "rpc.request": z.object({
    type: z.literal("rpc.request"),
    id: ref,
    from: nameSchema,
    method: methodSchema,
    input: z.json(),
    /** Room clock (ms) after which the caller no longer waits. */
    deadline: z.number(),
    ...traceFields,
    /**
     * The caller's idempotency key: the callee answers a request it has seen (same caller and
     * key) from memory instead of running the handler again. The room re-sends such a request
     * after the callee's link dropped.
     */
    idempotencyKey: z.string().min(1).max(200).optional(),
  }),
  /** The caller gave up on `id`: abort the work. */
  "rpc.abort": z.object({ type: z.literal("rpc.abort"), id: ref, reason: errorCodeSchema }),
  /** The answer to the caller's `rpc.call` `ref`. */
  "rpc.response": z.discriminatedUnion("ok", [
    z.object({ type: z.literal("rpc.response"), ref, ok: z.literal(true), output: z.json() }),
    z.object({ type: z.literal("rpc.response"), ref, ok: z.literal(false), error: errorBodySchema }),
  ]),
  /** Progress the callee reported on the caller's call `ref`. */
  "rpc.progress": z.object({ type: z.literal("rpc.progress"), ref, data: z.json() }),
  /** A fire-and-forget message for this agent. Handle it, then answer `rpc.message.ack`. */
  "rpc.message": z.object({
    type: z.literal("rpc.message"),
    id: z.string(),
    from: nameSchema,
    method: methodSchema,
    input: z.json(),
    /** Room clock when the message was stored. */
    ts: z.number(),
    ...traceFields,
  }),
  /** The message of `rpc.send` `ref` is stored for these agents. */
  "rpc.sent": z.object({ type: z.literal("rpc.sent"), ref, recipients: z.array(nameSchema) }),
  /** A roster change: an agent joined, left or changed its status or methods. */
  presence: z.object({
    type: z.literal("presence"),
    op: z.enum(["join", "leave", "update"]),
    agent: agentInfoSchema,
  }),
} as const;

export const roomFrameSchema = z.union([
  roomFrames.welcome,
  roomFrames["history.page"],
  roomFrames["consumer.state"],
  roomFrames.consumers,
  roomFrames.ok,
  roomFrames.trace,
  roomFrames["state.written"],
  roomFrames["lease.granted"],
  roomFrames["lease.lost"],
  roomFrames["group.deliver"],
  roomFrames["publish.ack"],
  roomFrames.error,
  roomFrames["rpc.request"],
  roomFrames["rpc.abort"],
  roomFrames["rpc.response"],
  roomFrames["rpc.progress"],
  roomFrames["rpc.message"],
  roomFrames["rpc.sent"],
  roomFrames.presence,
]);
export type RoomFrame = z.infer<typeof roomFrameSchema>;
export type RoomFrameType = keyof typeof roomFrames;

// ---------------------------------------------------------------------------------------
// Parsing

export type Parsed<T> = { ok: true; frame: T } | { ok: false; error: ErrorBody; ref?: string };

/**
 * Parses a text frame from an untrusted peer. Never throws: a frame that is not JSON, not
 * an object with a known `type`, or that fails its schema becomes a typed error.
 */
function parseFrame<T>(text: string, table: Record<string, z.ZodType>): Parsed<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, error: { code: "BAD_FRAME", message: "frame is not valid JSON" } };
  }
  const type = typeof raw === "object" && raw !== null ? (raw as { type?: unknown }).type : undefined;
  const maybeRef = typeof raw === "object" && raw !== null ? (raw as { ref?: unknown }).ref : undefined;
  const refOf = typeof maybeRef === "string" && maybeRef.length <= 64 ? maybeRef : undefined;
  if (typeof type !== "string" || !Object.hasOwn(table, type)) {
    return {
      ok: false,
      ref: refOf,
      error: { code: "UNKNOWN_FRAME", message: `unknown frame type ${JSON.stringify(type)?.slice(0, 80)}` },
    };
  }
  if (tooDeep(raw, MAX_JSON_DEPTH)) {
    return {
      ok: false,
      ref: refOf,
      error: { code: "BAD_FRAME", message: `frame nests deeper than ${MAX_JSON_DEPTH} levels` },
    };
  }
  let result: ReturnType<z.ZodType["safeParse"]>;
  try {
    result = (table[type] as z.ZodType).safeParse(raw);
  } catch {
    return { ok: false, ref: refOf, error: { code: "BAD_FRAME", message: `invalid ${type} frame` } };
  }
  if (!result.success) {
    return {
      ok: false,
      ref: refOf,
      error: {
        code: "BAD_FRAME",
        message: `invalid ${type} frame: ${z.prettifyError(result.error).slice(0, 500)}`,
        details: JSON.parse(JSON.stringify(result.error.issues.slice(0, 20))),
      },
    };
  }
  // The per-type schema already validated the frame; the union schema only narrows the type.
  return { ok: true, frame: result.data as T };
}

/** JSON deeper than this is refused before validation (the validator recurses per level). */
export const MAX_JSON_DEPTH = 64;

/** Iterative, so a hostile depth cannot overflow the stack here either. */
function tooDeep(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== "object" || v === null) continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

export const parseClientFrame = (text: string): Parsed<ClientFrame> => parseFrame(text, clientFrames);
export const parseRoomFrame = (text: string): Parsed<RoomFrame> => parseFrame(text, roomFrames);

// ---------------------------------------------------------------------------------------
// Binary document frames

/** The first varUint of a binary frame. Only one kind exists today; the byte leaves room. */
export const BINARY_KIND_DOC = 0;
/** y-websocket's message types, carried inside a doc frame. */
export const Y_MESSAGE_SYNC = 0;
/** y-websocket's awareness message type (stock clients only; agents use presence). */
export const Y_MESSAGE_AWARENESS = 1;

/**
 * A binary frame: `varUint kind=0, varString doc, y-websocket message` where the message is
 * `varUint 0 (sync)` followed by a y-protocols sync message (step 1, step 2 or update).
 */
export function encodeDocFrame(doc: DocName, write: (encoder: encoding.Encoder) => void): Uint8Array {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, BINARY_KIND_DOC);
  encoding.writeVarString(encoder, doc);
  encoding.writeVarUint(encoder, Y_MESSAGE_SYNC);
  write(encoder);
  return encoding.toUint8Array(encoder);
}

export type DocFrame = { doc: DocName; decoder: decoding.Decoder };

/** Reads a doc frame's header; the returned decoder sits at the y-protocols sync message. */
export function decodeDocFrame(bytes: Uint8Array): { ok: true; frame: DocFrame } | { ok: false; error: ErrorBody } {
  try {
    const decoder = decoding.createDecoder(bytes);
    const kind = decoding.readVarUint(decoder);
    if (kind !== BINARY_KIND_DOC) {
      return { ok: false, error: { code: "UNKNOWN_FRAME", message: `unknown binary frame kind ${kind}` } };
    }
    const name = docNameSchema.safeParse(decoding.readVarString(decoder));
    if (!name.success)
      return { ok: false, error: { code: "BAD_FRAME", message: "binary frame names no valid document" } };
    const yType = decoding.readVarUint(decoder);
    if (yType !== Y_MESSAGE_SYNC) {
      return { ok: false, error: { code: "UNKNOWN_FRAME", message: `unsupported y message type ${yType}` } };
    }
    return { ok: true, frame: { doc: name.data, decoder } };
  } catch {
    return { ok: false, error: { code: "BAD_FRAME", message: "truncated binary frame" } };
  }
}

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

// ---------------------------------------------------------------------------------------
// Chunking of large binary frames

/** The first varUint of a binary frame that carries one slice of a larger binary frame. */
export const BINARY_KIND_CHUNK = 1;
/** Room for the chunk header inside the frame limit. */
const CHUNK_PAYLOAD_BYTES = MAX_FRAME_BYTES - 64;
/** A reassembled frame may not exceed this (a document snapshot rarely comes close). */
export const MAX_REASSEMBLED_BYTES = 256 * 1024 * 1024;
let nextChunkId = 1;

/**
 * Splits a binary frame that exceeds {@link MAX_FRAME_BYTES} into chunk frames:
 * `varUint kind=1, varUint id, varUint index, varUint total, varUint8Array slice`.
 * A socket delivers in order, so the receiver joins slices as they come.
 */
export function chunkBinary(bytes: Uint8Array): Uint8Array[] {
  const id = nextChunkId++;
  const total = Math.ceil(bytes.byteLength / CHUNK_PAYLOAD_BYTES);
  const frames: Uint8Array[] = [];
  for (let index = 0; index < total; index++) {
    const encoder = encoding.createEncoder();
    encoding.writeVarUint(encoder, BINARY_KIND_CHUNK);
    encoding.writeVarUint(encoder, id);
    encoding.writeVarUint(encoder, index);
    encoding.writeVarUint(encoder, total);
    encoding.writeVarUint8Array(
      encoder,
      bytes.subarray(index * CHUNK_PAYLOAD_BYTES, (index + 1) * CHUNK_PAYLOAD_BYTES),
    );
    frames.push(encoding.toUint8Array(encoder));
  }
  return frames;
}

/**
 * Joins chunk frames from one socket. `push` returns the whole frame when its last slice
 * arrives, `null` while incomplete, or an error for slices out of order or too large.
 */
export function createReassembler(): {
  push(bytes: Uint8Array): { ok: true; frame: Uint8Array | null } | { ok: false; error: ErrorBody };
} {
  let current: { id: number; total: number; parts: Uint8Array[]; bytes: number } | null = null;
  return {
    push(bytes) {
      const decoder = decoding.createDecoder(bytes);
      try {
        if (decoding.readVarUint(decoder) !== BINARY_KIND_CHUNK) return { ok: true, frame: bytes };
        const id = decoding.readVarUint(decoder);
        const index = decoding.readVarUint(decoder);
        const total = decoding.readVarUint(decoder);
        const part = decoding.readVarUint8Array(decoder);
        if (index === 0) current = { id, total, parts: [], bytes: 0 };
        if (!current || current.id !== id || current.parts.length !== index || current.total !== total) {
          current = null;
          return { ok: false, error: { code: "BAD_FRAME", message: "chunk out of order" } };
        }
        current.parts.push(part);
        current.bytes += part.byteLength;
        if (current.bytes > MAX_REASSEMBLED_BYTES) {
          current = null;
          return { ok: false, error: { code: "TOO_LARGE", message: "chunked frame too large" } };
        }
        if (current.parts.length < total) return { ok: true, frame: null };
        const out = new Uint8Array(current.bytes);
        let at = 0;
        for (const p of current.parts) {
          out.set(p, at);
          at += p.byteLength;
        }
        current = null;
        return { ok: true, frame: out };
      } catch {
        current = null;
        return { ok: false, error: { code: "BAD_FRAME", message: "truncated chunk frame" } };
      }
    },
  };
}
