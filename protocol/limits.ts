/**
 * Versions and limits both sides enforce. The room refuses what exceeds them; the client
 * refuses it before sending, so the caller gets the error at once.
 */

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
/** JSON deeper than this is refused before validation (the validator recurses per level). */
export const MAX_JSON_DEPTH = 64;
