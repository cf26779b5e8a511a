/**
 * The room's side of the heartbeat (`ping` → `pong`, protocol/frames.ts): a client that hears
 * nothing for a while asks, and reconnects when no answer comes. The room answers as cheaply
 * as it can: the canonical {@link PING_FRAME} text is matched before any parsing, queueing or
 * limit accounting (what a hibernating Durable Object's `setWebSocketAutoResponse` pair does
 * without waking), and the answer jumps the session's queue — it says the socket is alive, not
 * that earlier frames are done. A ping spelt differently (other JSON whitespace) goes through
 * dispatch like any frame and gets the same answer.
 */
import { PING_FRAME, PONG_FRAME } from "../protocol/index.ts";
import type { RoomModule } from "./handlers.ts";

/** True (and answered) when `data` is the canonical ping. */
export function answerPing(data: unknown, send: (text: string) => void): boolean {
  if (data !== PING_FRAME) return false;
  send(PONG_FRAME);
  return true;
}

export const heartbeatModule: RoomModule<"ping"> = {
  frames: { ping: (session) => session.sendText(PONG_FRAME) },
};
