/**
 * Versions and limits both sides enforce. The room refuses what exceeds them; the client
 * refuses it before sending, so the caller gets the error at once.
 */

/** Bumped when a frame changes incompatibly; sent by the client as the `v` query parameter. */
export const PROTOCOL_VERSION = 2;

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
/** JSON deeper than this is refused before validation (the validator recurses per level). */
export const MAX_JSON_DEPTH = 64;

/**
 * What the room allows one connection, and where a hostile or broken client is stopped.
 * Each is refused with a typed error (`TOO_LARGE`, `LIMIT_EXCEEDED`, `RATE_LIMITED`) or a
 * named close code, and nothing above a limit is applied. The room reads overrides from its
 * variables (`--var CROSSTALK_MAX_OPEN_DOCS=128`; the names are in the README's limits table).
 */
export const DEFAULT_ROOM_LIMITS = {
  /** A text frame, or one binary frame (a larger document message is sent in chunks). */
  maxFrameBytes: MAX_FRAME_BYTES,
  /** A reassembled binary frame, hence a Yjs update, from a client (the room has ~128 MB). */
  maxUpdateBytes: 16 * 1024 * 1024,
  /** How deep Yjs types may nest in a document (the room's layouts use 3). */
  maxDocDepth: 32,
  /** Documents (state namespaces and stream logs) open on one connection at once. */
  maxOpenDocs: 64,
  /** Calls one connection has waiting for an answer. */
  maxCallsInFlight: 1024,
  /**
   * Events per second one connection may publish, sustained (a token bucket)… Above what one
   * room appends (about 10k events/s here), so it shapes a flood without slowing an honest
   * pipeline, an import or a benchmark.
   */
  publishRate: 20_000,
  /** …and in a burst. */
  publishBurst: 100_000,
  /** Sockets one agent id may hold at once (its agent socket and stock Yjs providers). */
  maxConnectionsPerAgent: 16,
  /** Feeds and consumer-group memberships of one connection. */
  maxSubscriptions: 64,
  /**
   * Refused frames (malformed, unknown, too large, over a limit) a connection may send before
   * the room closes it with `TooManyErrors`; one is forgiven per second.
   */
  errorBudget: 100,
} as const;

export type RoomLimits = { -readonly [K in keyof typeof DEFAULT_ROOM_LIMITS]: number };
