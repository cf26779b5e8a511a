/**
 * Flow control: what keeps an agent that stops reading its socket from growing the room's
 * memory or slowing the others. workerd's server-side WebSocket shows no backlog, so the
 * client tells: a client that connected with `flow=1` reports what it has read (`read`
 * frames, about every eighth of its budget), and each session counts what it sent and not yet
 * heard read (`Session.unread`, an addition per frame on the already-encoded text or bytes).
 * Past the budget (`RoomLimits.maxUnreadBytes`, given to the client in its `welcome`), the
 * room sends it no more fan-out and closes it with `SlowReader` (4005, `Admission`); the
 * client reconnects and catches up from the log like after any drop.
 *
 * A `read` frame jumps the session's queue, as a ping does: it says what the socket carried,
 * not that earlier frames are done, and a frame waiting on a document load must not hold it.
 * Spelt as `readFrame` writes it, it is read with a prefix test and a number parse.
 */
import { READ_FRAME_PREFIX } from "../protocol/index.ts";
import type { RoomModule } from "./handlers.ts";
import type { Session } from "./session.ts";

/** True (and applied to `session`) when `data` is a canonical `read` frame. */
export function takeRead(data: unknown, session: Session): boolean {
  if (typeof data !== "string" || !data.startsWith(READ_FRAME_PREFIX) || !data.endsWith("}")) return false;
  const bytes = Number(data.slice(READ_FRAME_PREFIX.length, -1));
  // Anything else spelt this way (a fraction, a negative, junk) goes through dispatch, and its schema.
  if (!Number.isSafeInteger(bytes) || bytes < 0) return false;
  session.read(bytes);
  return true;
}

export const flowModule: RoomModule<"read"> = {
  frames: { read: (session, frame) => session.read(frame.bytes) },
};
