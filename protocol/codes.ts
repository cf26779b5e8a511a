/**
 * Error codes and close codes: the one table every `CrosstalkError`, `error` frame and
 * `rpc.response` failure draws from, and the WebSocket close codes the room uses.
 */
import { z } from "zod";

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
  LIMIT_EXCEEDED: {
    retryable: false,
    doc: "A per-connection limit was reached (open documents, calls in flight, subscriptions); `details.limit` names it and `details.max` its value. Close something first.",
  },
  RATE_LIMITED: {
    retryable: true,
    doc: "The connection publishes faster than the room's rate (a token bucket per connection); `details.retryAfterMs` says when it may go on. Nothing was applied.",
  },
  DECRYPT_FAILED: {
    retryable: false,
    doc: "An encrypted payload could not be decrypted: no key for its `kid`, a wrong key, a tampered header or ciphertext, or a header bound to another team, stream, id or type.",
  },
  OVERLOADED: { retryable: true, doc: "Too many calls in flight at the callee or the room. Back off and retry." },
  OFFLINE: { retryable: true, doc: "The connection dropped while the request was in flight; its outcome is unknown." },
  CLOSED: { retryable: false, doc: "The client was closed by its owner." },
  STORAGE_FULL: {
    retryable: false,
    doc: "The agent's local storage refused a write (browser quota, full disk). Nothing was queued; free space or drain the outbox first.",
  },
  EVENTS_REMOVED: {
    retryable: false,
    doc: "The events asked for were removed by the stream's retention (`policy.retention`); `details.firstSeq` is the oldest seq the stream still keeps. Resume from there: read history from `firstSeq`, or subscribe with `from: firstSeq` (a durable consumer: `skipRemoved: true`).",
  },
  REBASED: {
    retryable: true,
    doc: "The room rebased a state document onto a fresh copy to shed its history. The client syncs a fresh copy and carries over what the room had not seen: its writes past `details.known` (Yjs client id → the room's clock of it) and its deletes of the entries `details.live` names (client id → clocks of the items the room still held unchanged).",
  },
  INTERNAL: { retryable: true, doc: "The room hit an unexpected error; nothing was applied." },
} as const satisfies Record<string, { retryable: boolean; doc: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
export const errorCodeSchema = z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]);

/** WebSocket close codes the room uses (4000-4999 is the application range). */
export const CLOSE_CODES = {
  /** The connect URL lacks a valid `agent`/`role`, or names an unsupported protocol version. */
  BadRequest: { code: 4400, reason: "bad request" },
  /**
   * No token, or one the room cannot trust (bad signature, unknown key id, an algorithm the
   * room does not accept, missing claims), or the room has no key configured. Fatal: the
   * same token would be refused again.
   */
  Unauthorized: { code: 4401, reason: "unauthorized" },
  /**
   * A valid token that does not admit this connection: issued for another team (audience),
   * or naming another agent than the URL's `agent`. Fatal.
   */
  Forbidden: { code: 4403, reason: "forbidden" },
  /**
   * An unsigned connection (no verified identity, in-process hosts only) claims an agent id
   * another client instance holds. Signed connections take over instead (`TakenOver`).
   */
  AgentIdInUse: { code: 4409, reason: "agent id in use" },
  /** The same client instance reconnected; the older socket is closed. */
  Replaced: { code: 4000, reason: "replaced by a newer connection" },
  /**
   * The token expired: at connect, or while the socket lived (the room closes it at `exp`).
   * Not fatal: the client asks its token provider (the `query`/`token` option) again and
   * reconnects with what it returns, after the usual backoff.
   */
  TokenExpired: { code: 4001, reason: "token expired" },
  /**
   * A newer authenticated connection of the same agent id (another client instance: a
   * restarted process, a second tab) took over; the last one in wins. Fatal for the older
   * client, so the two never take the id back and forth.
   */
  TakenOver: { code: 4002, reason: "taken over by a newer connection of this agent" },
  /**
   * The connection sent a Yjs update the room cannot apply safely (malformed, throwing, with
   * missing dependencies, nested too deep, or under another agent's Yjs client id). Nothing of
   * it was applied. Fatal: the client's copy of the document is not one the room accepts.
   */
  BadUpdate: { code: 4422, reason: "unacceptable document update" },
  /**
   * The connection kept sending frames the room refused (its error budget,
   * `DEFAULT_ROOM_LIMITS.errorBudget`, ran out). Fatal: reconnecting would do the same.
   */
  TooManyErrors: { code: 4429, reason: "too many refused frames" },
  /** The agent already holds `maxConnectionsPerAgent` sockets; this one is refused. */
  TooManyConnections: { code: 4408, reason: "too many connections for this agent" },
  /**
   * Sent by the client, not the room: nothing arrived in time after a `ping`, so the link is
   * taken for dead (half-open: bytes silently dropped) and the client reconnects. Not fatal.
   */
  NoHeartbeat: { code: 4004, reason: "no answer to ping" },
  /**
   * The agent stopped reading: more than its unread budget (`maxUnreadBytes`) was sent and not
   * reported read (`read` frames). Not fatal: the client reconnects and catches up from the
   * log where it stopped, nothing lost or repeated.
   */
  SlowReader: { code: 4005, reason: "too far behind reading" },
} as const;

/** Close codes after which the client must not reconnect by itself. */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CLOSE_CODES.BadRequest.code,
  CLOSE_CODES.Unauthorized.code,
  CLOSE_CODES.Forbidden.code,
  CLOSE_CODES.AgentIdInUse.code,
  CLOSE_CODES.TakenOver.code,
  CLOSE_CODES.BadUpdate.code,
  CLOSE_CODES.TooManyErrors.code,
]);

export const errorBodySchema = z.object({
  code: errorCodeSchema,
  message: z.string(),
  /** Machine-readable extras, e.g. zod issues for a schema failure. */
  details: z.json().optional(),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;
