/**
 * The crosstalk control frames: every JSON frame each side may send, which room frame
 * answers which client request, and the parser both sides run on untrusted text.
 *
 * Both the room (`party/`) and the client (`client/`) import this module; nothing else
 * declares a frame. `docs/PROTOCOL.md` is checked against these schemas by
 * `test/protocol-doc.test.ts`, and `test/fixtures/frames.json` holds golden frames that
 * every future version must still accept.
 *
 * One WebSocket per agent carries two kinds of frame:
 * - text frames: JSON control frames, validated with the zod schemas below, or a batch of
 *   them (`parseClientBatch`, `parseRoomBatch`) where the receiving side said it reads batches;
 * - binary frames: Yjs documents (see `binary.ts`).
 */
import { z } from "zod";
import { type ErrorBody, errorBodySchema, errorCodeSchema } from "./codes.ts";
import { fastClientFrames, fastRoomFrames } from "./fast-frames.ts";
import { MAX_HISTORY_PAGE, MAX_JSON_DEPTH } from "./limits.ts";
import { docNameSchema, methodSchema, nameSchema, patternSchema } from "./names.ts";
import { permissionsSchema, policySchema } from "./permissions.ts";
import {
  agentInfoSchema,
  consumerInfoSchema,
  eventInputSchema,
  jsonRecordSchema,
  leaseNameSchema,
  leaseTtlSchema,
  methodInfoSchema,
  refSchema,
  storedEventSchema,
  targetSchema,
  traceFields,
  traceItemSchema,
} from "./schemas.ts";

/**
 * One `z.discriminatedUnion("type", …)` over a table's schemas, so the union is derived from
 * the table instead of listed again by hand (a frame missing from a hand-written list parsed
 * per type but failed the union).
 */
function unionOf<T extends Record<string, z.core.$ZodTypeDiscriminable>>(table: T) {
  const options = Object.values(table) as unknown as [T[keyof T], ...T[keyof T][]];
  return z.discriminatedUnion("type", options);
}

// ---------------------------------------------------------------------------------------
// Client -> room

/**
 * Where a frame sits in its sender's durable outbox: the agent instance that wrote it and
 * the entry's number there (1, 2, 3… per instance, in the order written). The room keeps
 * the highest number it has applied per agent, instance and channel (a stream, or direct
 * messages), so a resend at or below it is a duplicate however long the agent was away
 * (Replicache's `lastMutationID`). Frames without it are deduped by id within the room's
 * window, as before.
 */
export const outboxEntrySchema = z.object({
  instance: z.string().min(1).max(128),
  n: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
});
export type OutboxEntry = z.infer<typeof outboxEntrySchema>;

export const clientFrames = {
  /** Append events to a stream; answered by `publish.ack` or `error` with the same `ref`. */
  publish: z.object({
    type: z.literal("publish"),
    ref: refSchema,
    stream: nameSchema,
    events: z.array(eventInputSchema).min(1).max(1000),
    /** Optimistic concurrency: refused with CONFLICT unless the stream's last seq is this. */
    expectedLastSeq: z.number().int().min(0).optional(),
    /** Sent from a durable outbox: deduped by entry number, with no time limit. */
    outbox: outboxEntrySchema.optional(),
  }),
  /** Read a page of a stream's history, archive included; answered by `history.page`. */
  history: z.object({
    type: z.literal("history"),
    ref: refSchema,
    stream: nameSchema,
    from: z.number().int().min(1),
    /** Last seq wanted (inclusive); default: the head. */
    to: z.number().int().min(1).optional(),
    limit: z.number().int().min(1).max(MAX_HISTORY_PAGE),
  }),
  /** The stored position of a durable consumer; answered by `consumer.state`. */
  "consumer.get": z.object({
    type: z.literal("consumer.get"),
    ref: refSchema,
    stream: nameSchema,
    consumer: nameSchema,
  }),
  /** A durable consumer has handled everything up to `seq`. Stored, not answered. */
  "consumer.ack": z.object({
    type: z.literal("consumer.ack"),
    stream: nameSchema,
    consumer: nameSchema,
    seq: z.number().int().min(0),
  }),
  /** List a stream's durable consumers and groups; answered by `consumers`. */
  "consumers.list": z.object({ type: z.literal("consumers.list"), ref: refSchema, stream: nameSchema }),
  /** Join a consumer group; the room then leases events with `group.deliver`. Answered by `ok`. */
  "group.join": z.object({
    type: z.literal("group.join"),
    ref: refSchema,
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
    ref: refSchema,
    ns: nameSchema,
    key: z.string().min(1).max(512),
    /** The entity's current version must be this (0: it must not exist). */
    expectedVersion: z.number().int().min(0),
    value: jsonRecordSchema,
  }),
  /** Take lease `name` for `ttlMs`; answered by `lease.granted` or CONFLICT (held by another agent). */
  "lease.acquire": z.object({
    type: z.literal("lease.acquire"),
    ref: refSchema,
    name: leaseNameSchema,
    ttlMs: leaseTtlSchema,
  }),
  /** Extend a held lease; answered by `lease.granted` or CONFLICT when it was lost. */
  "lease.renew": z.object({
    type: z.literal("lease.renew"),
    ref: refSchema,
    name: leaseNameSchema,
    token: z.number().int(),
    ttlMs: leaseTtlSchema,
  }),
  /** Give a held lease up; answered by `ok`. */
  "lease.release": z.object({
    type: z.literal("lease.release"),
    ref: refSchema,
    name: leaseNameSchema,
    token: z.number().int(),
  }),
  /** The events, calls and messages of one piece of work; answered by `trace`. */
  "trace.get": z.object({
    type: z.literal("trace.get"),
    ref: refSchema,
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
    /** What some of the methods are (description, JSON Schemas, fire-and-forget): for A2A cards. */
    info: z.record(methodSchema, methodInfoSchema).optional(),
  }),
  /** Call `method` on `to` (an agent, or any live agent of a role); answered by `rpc.response`. */
  "rpc.call": z.object({
    type: z.literal("rpc.call"),
    ref: refSchema,
    to: targetSchema,
    method: methodSchema,
    input: z.json(),
    timeoutMs: z.number().int().min(1).max(3_600_000),
    ...traceFields,
    /** With a key, the room runs the call at most once per caller and key, and keeps its result. */
    idempotencyKey: z.string().min(1).max(200).optional(),
  }),
  /** A callee reports progress on call `id`; relayed to the caller. */
  "rpc.progress": z.object({ type: z.literal("rpc.progress"), id: refSchema, data: z.json() }),
  /** Fire-and-forget: store a message for `to` (kept in its inbox while offline); answered by `rpc.sent`. */
  "rpc.send": z.object({
    type: z.literal("rpc.send"),
    ref: refSchema,
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
    /** Sent from a durable outbox: deduped by entry number, with no time limit. */
    outbox: outboxEntrySchema.optional(),
  }),
  /** The recipient has handled message `id`; the room drops it from the inbox. */
  "rpc.message.ack": z.object({ type: z.literal("rpc.message.ack"), id: z.string().min(1).max(128) }),
  /** The caller gives up on call `ref` (timeout or abort). */
  "rpc.cancel": z.object({
    type: z.literal("rpc.cancel"),
    ref: refSchema,
    /** Why, passed to the callee's abort signal (default CANCELLED). */
    reason: z.enum(["CANCELLED", "TIMEOUT"]).optional(),
  }),
  /** A callee's answer to `rpc.request` `id`. */
  "rpc.result": z.discriminatedUnion("ok", [
    z.object({ type: z.literal("rpc.result"), id: refSchema, ok: z.literal(true), output: z.json() }),
    z.object({ type: z.literal("rpc.result"), id: refSchema, ok: z.literal(false), error: errorBodySchema }),
  ]),
  /** Replace this agent's free-form status fields in the roster. */
  "presence.set": z.object({ type: z.literal("presence.set"), status: jsonRecordSchema }),
  /**
   * The agent is leaving on purpose: after every earlier frame, the room takes it off the
   * roster, fails its in-flight calls and frees its id, then answers `ok`; the client closes
   * the socket after the answer, so the id can be used again at once.
   */
  leave: z.object({ type: z.literal("leave"), ref: refSchema }),
  /** The team's policy as stored; answered by `policy`. Needs `policy.admin`. */
  "policy.get": z.object({ type: z.literal("policy.get"), ref: refSchema }),
  /**
   * Replace the team's policy (`permissions.ts`); answered by `policy` once stored, or
   * INVALID_ARGUMENT with every problem in `details.issues`. Takes effect for live sessions
   * at once. Needs `policy.admin`.
   */
  "policy.set": z.object({
    type: z.literal("policy.set"),
    ref: refSchema,
    /** Checked by the room, which answers a bad one with every problem. */
    policy: z.json(),
    /** Refused with CONFLICT unless the stored policy is at this revision. */
    expectedRev: z.number().int().min(0).optional(),
  }),
  /**
   * A room-pushed, type-filtered event feed: for an agent allowed only some types of a
   * stream, which therefore may not read its raw log document. The room sends `feed.events`
   * with the events from `from` on that match `pattern` and that the agent may read, in seq
   * order, then every new one as it is appended. Answered by `feed.started`. Resume after a
   * reconnect by opening again from the next seq not yet handled.
   */
  "feed.open": z.object({
    type: z.literal("feed.open"),
    ref: refSchema,
    /** The client's name for this feed, echoed in `feed.events`; opening it again replaces it. */
    feed: z.string().min(1).max(64),
    stream: nameSchema,
    pattern: patternSchema,
    /** The first seq wanted, or "end" (only what is appended from now on). */
    from: z.union([z.literal("end"), z.number().int().min(1)]),
    /** With it, `from` is ignored: start at the first event at or after this room time (ms). */
    fromTime: z.number().optional(),
  }),
  /** Stop feed `feed`. */
  "feed.close": z.object({ type: z.literal("feed.close"), feed: z.string().min(1).max(64) }),
  /**
   * Heartbeat: "are you there?", answered by `pong` out of band (before any frame still
   * queued). A client sends it after a quiet spell and reconnects when nothing at all arrives
   * in time: a socket whose bytes are silently dropped (half-open TCP) is found only this way.
   * Send exactly {@link PING_FRAME}: the room matches that text without decoding JSON, as a
   * hibernating Durable Object's `setWebSocketAutoResponse` pair does.
   */
  ping: z.object({ type: z.literal("ping") }),
  /**
   * Flow control: "I have read `bytes` more of what you sent since my last `read`" (text
   * frames counted in UTF-16 units, binary frames in bytes, every frame of the socket). Sent
   * only to a room whose `welcome` carried `unreadBudget`, about every eighth of it; the room
   * holds each connection to that budget of unread bytes (`CLOSE_CODES.SlowReader`). Spelt
   * as {@link readFrame} writes it, the room reads it without parsing JSON; never answered.
   */
  read: z.object({ type: z.literal("read"), bytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
} as const;

export type ClientFrameType = keyof typeof clientFrames;
/** The frame of client type `K`. */
export type ClientFrameOf<K extends ClientFrameType> = z.infer<(typeof clientFrames)[K]>;
/** Every client frame, one schema per type, told apart by `type`. */
export const clientFrameSchema = unionOf(clientFrames);
export type ClientFrame = z.infer<typeof clientFrameSchema>;

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
    /**
     * What this agent may do (its role's rules ∩ its token's scope; `permissions.ts`), so
     * the client refuses a forbidden operation before sending it. Absent from older rooms.
     */
    permissions: permissionsSchema.optional(),
    /**
     * The room holds this connection to this many bytes sent but not yet reported read: the
     * client reports what it reads with `read` frames. Every agent connection is held to it,
     * whether or not its URL said `flow=1` (a socket nobody reads must not grow the room);
     * absent from older rooms, whose clients then send no `read`.
     */
    unreadBudget: z.number().int().min(1).optional(),
    /**
     * The room reads batches (`parseClientBatch`): this connection may send the frames of one
     * tick as one text message, a JSON array of frames. Absent from older rooms, which are
     * sent one frame per message.
     */
    batches: z.literal(true).optional(),
  }),
  /** The team's policy changed: this agent's permissions from now on. */
  permissions: z.object({ type: z.literal("permissions"), permissions: permissionsSchema }),
  /** The team's policy, for `policy.get` and `policy.set`. */
  policy: z.object({
    type: z.literal("policy"),
    ref: refSchema,
    policy: policySchema,
    /** Grows with every change (0: the default policy, never set). */
    rev: z.number().int().min(0),
    updatedAt: z.number().optional(),
    updatedBy: nameSchema.optional(),
  }),
  /** Feed `feed` is open: events from `from` on follow in `feed.events`; `head` is the stream's last seq now. */
  "feed.started": z.object({
    type: z.literal("feed.started"),
    ref: refSchema,
    feed: z.string(),
    from: z.number().int().min(1),
    head: z.number().int().min(0),
  }),
  /** Events of feed `feed`, ascending seq; seqs between them are types this agent does not receive. */
  "feed.events": z.object({
    type: z.literal("feed.events"),
    feed: z.string(),
    events: z.array(storedEventSchema).min(1),
  }),
  /** Durable acknowledgement of a `publish`, one result per event in order. */
  "publish.ack": z.object({
    type: z.literal("publish.ack"),
    ref: refSchema,
    results: z.array(z.object({ id: z.string(), seq: z.number().int(), ts: z.number(), duplicate: z.boolean() })),
  }),
  /** A page of history: events in seq order; `next` is where to continue, null at `to`/the head. */
  "history.page": z.object({
    type: z.literal("history.page"),
    ref: refSchema,
    events: z.array(storedEventSchema),
    head: z.number().int(),
    next: z.number().int().nullable(),
  }),
  /** A durable consumer's stored position (`acked` null: the consumer is new). */
  "consumer.state": z.object({
    type: z.literal("consumer.state"),
    ref: refSchema,
    stream: nameSchema,
    consumer: nameSchema,
    acked: z.number().int().nullable(),
  }),
  consumers: z.object({
    type: z.literal("consumers"),
    ref: refSchema,
    stream: nameSchema,
    head: z.number().int(),
    consumers: z.array(consumerInfoSchema),
  }),
  /** A conditional write succeeded: the entity now has this version. */
  "state.written": z.object({ type: z.literal("state.written"), ref: refSchema, version: z.number().int() }),
  /** The lease is this agent's until `expiresAt` (room clock); `token` grows with every grant (a fencing token). */
  "lease.granted": z.object({
    type: z.literal("lease.granted"),
    ref: refSchema,
    name: leaseNameSchema,
    token: z.number().int(),
    expiresAt: z.number(),
  }),
  /** A lease this agent held expired (it was not renewed in time). */
  "lease.lost": z.object({ type: z.literal("lease.lost"), name: leaseNameSchema, token: z.number().int() }),
  /** Everything the room knows of one correlation id: events (from the streams) and recent calls and messages. */
  trace: z.object({
    type: z.literal("trace"),
    ref: refSchema,
    nodes: z.array(traceItemSchema),
  }),
  /** A request without a result succeeded. */
  ok: z.object({ type: z.literal("ok"), ref: refSchema }),
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
    id: refSchema,
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
  "rpc.abort": z.object({ type: z.literal("rpc.abort"), id: refSchema, reason: errorCodeSchema }),
  /** The answer to the caller's `rpc.call` `ref`. */
  "rpc.response": z.discriminatedUnion("ok", [
    z.object({ type: z.literal("rpc.response"), ref: refSchema, ok: z.literal(true), output: z.json() }),
    z.object({ type: z.literal("rpc.response"), ref: refSchema, ok: z.literal(false), error: errorBodySchema }),
  ]),
  /** Progress the callee reported on the caller's call `ref`. */
  "rpc.progress": z.object({ type: z.literal("rpc.progress"), ref: refSchema, data: z.json() }),
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
  "rpc.sent": z.object({ type: z.literal("rpc.sent"), ref: refSchema, recipients: z.array(nameSchema) }),
  /** The answer to `ping`, always exactly {@link PONG_FRAME}. */
  pong: z.object({ type: z.literal("pong") }),
  /** A roster change: an agent joined, left or changed its status or methods. */
  presence: z.object({
    type: z.literal("presence"),
    op: z.enum(["join", "leave", "update"]),
    agent: agentInfoSchema,
  }),
  /**
   * Several roster changes at once, in the order they happened: the room coalesces what
   * changed within one presence tick into one frame per agent (a join storm of N agents costs
   * N frames per tick, not N × N). A tick with one change sends `presence` instead.
   */
  "presence.batch": z.object({
    type: z.literal("presence.batch"),
    changes: z.array(z.object({ op: z.enum(["join", "leave", "update"]), agent: agentInfoSchema })),
  }),
} as const;

export type RoomFrameType = keyof typeof roomFrames;
/** The frame of room type `K`. */
export type RoomFrameOf<K extends RoomFrameType> = z.infer<(typeof roomFrames)[K]>;
/** Every room frame, one schema per type, told apart by `type`. */
export const roomFrameSchema = unionOf(roomFrames);
export type RoomFrame = z.infer<typeof roomFrameSchema>;

/**
 * The heartbeat's two frames as fixed text. A request/response pair of constant strings is
 * what a hibernating Durable Object answers without waking (`ctx.setWebSocketAutoResponse(new
 * WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME))`), and what the awake room answers
 * with one string comparison; neither side parses JSON for it.
 */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

/** How every `read` frame starts, so the room can read one with a prefix test and a number parse. */
export const READ_FRAME_PREFIX = '{"type":"read","bytes":';

/** The canonical `read` frame for `bytes`. */
export const readFrame = (bytes: number): string => `${READ_FRAME_PREFIX}${bytes}}`;

// ---------------------------------------------------------------------------------------
// Requests and their answers

/**
 * Which room frame answers which client request, carrying the request's `ref`. Any request
 * may instead be refused with an `error` frame with that `ref`. Client frames not listed
 * get no answer unless they are refused. The client's `Requests.ask` takes its return type
 * from here, and the room's dispatch wraps a handler's reply in this frame type.
 */
export const replies = {
  publish: "publish.ack",
  history: "history.page",
  "consumer.get": "consumer.state",
  "consumers.list": "consumers",
  "group.join": "ok",
  "state.setIf": "state.written",
  "lease.acquire": "lease.granted",
  "lease.renew": "lease.granted",
  "lease.release": "ok",
  "trace.get": "trace",
  "rpc.call": "rpc.response",
  "rpc.send": "rpc.sent",
  leave: "ok",
  "policy.get": "policy",
  "policy.set": "policy",
  "feed.open": "feed.started",
} as const satisfies { readonly [K in ClientFrameType]?: RoomFrameType };

/** Client frames the room answers. */
export type RequestType = keyof typeof replies;
/** The room frame that answers request type `K`. */
export type ReplyOf<K extends RequestType> = RoomFrameOf<(typeof replies)[K]>;

// ---------------------------------------------------------------------------------------
// Parsing

export type Parsed<T> = { ok: true; frame: T } | { ok: false; error: ErrorBody; ref?: string };

/**
 * Parses a text frame from an untrusted peer. Never throws: a frame that is not JSON, not
 * an object with a known `type`, or that fails its schema becomes a typed error.
 */
function parseFrame<T>(
  text: string,
  table: Record<string, z.ZodType>,
  fast: Readonly<Record<string, (frame: Record<string, unknown>) => boolean>>,
): Parsed<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, error: { code: "BAD_FRAME", message: "frame is not valid JSON" } };
  }
  return checkFrame(raw, plainKeys(text), table, fast);
}

/**
 * Whether the fast checks may take a parsed value as it is: not when a key may be
 * `__proto__` (spelled out or escaped), since zod's copy drops such keys.
 */
const plainKeys = (text: string): boolean => !text.includes("__proto__") && !text.includes("\\u");

/** Checks one value `JSON.parse` produced against its frame type's schema. */
function checkFrame<T>(
  raw: unknown,
  plain: boolean,
  table: Record<string, z.ZodType>,
  fast: Readonly<Record<string, (frame: Record<string, unknown>) => boolean>>,
): Parsed<T> {
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
  // A hot frame its schema would accept unchanged is the frame as parsed (`fast-frames.ts`).
  if (plain && Object.hasOwn(fast, type)) {
    if (fast[type]?.(raw as Record<string, unknown>)) return { ok: true, frame: raw as T };
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

/** Iterative, so a hostile depth cannot overflow the stack here either. */
function tooDeep(value: unknown, max: number): boolean {
  // Two parallel stacks of objects only: no tuple per value, no push per scalar (a hot path).
  const values: object[] = [];
  const depths: number[] = [];
  if (typeof value === "object" && value !== null) {
    values.push(value);
    depths.push(0);
  }
  while (values.length > 0) {
    const v = values.pop() as object;
    const depth = depths.pop() as number;
    if (depth >= max) return true;
    if (Array.isArray(v)) {
      for (const child of v) {
        if (typeof child === "object" && child !== null) {
          values.push(child);
          depths.push(depth + 1);
        }
      }
    } else {
      for (const key in v) {
        const child = (v as Record<string, unknown>)[key];
        if (typeof child === "object" && child !== null) {
          values.push(child);
          depths.push(depth + 1);
        }
      }
    }
  }
  return false;
}

export const parseClientFrame = (text: string): Parsed<ClientFrame> => parseFrame(text, clientFrames, fastClientFrames);
export const parseRoomFrame = (text: string): Parsed<RoomFrame> => parseFrame(text, roomFrames, fastRoomFrames);

// ---------------------------------------------------------------------------------------
// Batches

/**
 * The most text either side puts in one batch. A frame that would take a batch past it starts
 * the next one; a frame longer than this on its own goes alone, as a plain text frame.
 */
export const MAX_BATCH_CHARS = 64 * 1024;

/**
 * Whether a text message is a batch: several frames in one WebSocket message, as a JSON
 * array of frames (`[{"type":"rpc.call",…},{"type":"rpc.result",…}]`). An agent sends one
 * only to a room whose `welcome` said `batches: true`, and a room only to an agent whose URL
 * said `batch=1`; the receiver reads every frame of it exactly as if each had come alone, in
 * order. One message per tick instead of one per frame is what a hibernating room pays for
 * most (the host's per-message event), and what a busy client's socket writes cost.
 */
export const isBatch = (text: string): boolean => text.charCodeAt(0) === 0x5b; // "["

/** Joins the texts of frames (`JSON.stringify` of each) into one batch message. */
export const batchOf = (texts: readonly string[]): string => `[${texts.join(",")}]`;

/**
 * Parses a batch from an untrusted agent (`isBatch`): one outcome per element, in order, each
 * as `parseClientFrame` would give it for that frame alone. Never throws; a message that is
 * not JSON, or an empty array, is one BAD_FRAME.
 */
export const parseClientBatch = (text: string): Parsed<ClientFrame>[] =>
  parseBatch(text, clientFrames, fastClientFrames);

/**
 * Parses a batch from the room: what a room sends an agent whose URL said `batch=1` (the
 * frames it sends that agent in one tick, as one message). As `parseClientBatch`.
 */
export const parseRoomBatch = (text: string): Parsed<RoomFrame>[] => parseBatch(text, roomFrames, fastRoomFrames);

function parseBatch<T>(
  text: string,
  table: Record<string, z.ZodType>,
  fast: Readonly<Record<string, (frame: Record<string, unknown>) => boolean>>,
): Parsed<T>[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return [{ ok: false, error: { code: "BAD_FRAME", message: "frame is not valid JSON" } }];
  }
  if (!Array.isArray(raw) || raw.length === 0)
    return [{ ok: false, error: { code: "BAD_FRAME", message: "a batch is a non-empty array of frames" } }];
  const plain = plainKeys(text);
  return raw.map((item: unknown) => checkFrame<T>(item, plain, table, fast));
}
