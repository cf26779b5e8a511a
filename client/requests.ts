/**
 * Control requests that the room answers with a frame carrying the same `ref` (history
 * pages, consumer positions, group joins). The answer's type comes from the protocol's
 * `replies` table, checked here once, so callers get the frame they asked for and never
 * narrow it themselves. A request made offline waits for the next connection; one in flight
 * when the socket drops fails with OFFLINE, so the caller decides whether to ask again.
 * Not re-exported from the package entry point; `team.ts` owns it.
 */
import {
  type ClientFrameOf,
  CrosstalkError,
  type ReplyOf,
  type RequestType,
  type RoomFrame,
  replies,
} from "../protocol/index.ts";
import type { Transport } from "./transport.ts";

/** A request the room answers by `ref`, as sent. */
type Sent = ClientFrameOf<RequestType> & { ref: string };
/** A request frame without its `ref` (assigned when it is sent), per frame type. */
type Unsent<K extends RequestType> = K extends RequestType ? Omit<ClientFrameOf<K>, "ref"> : never;
type Pending = {
  frame: Sent;
  sent: boolean;
  resolve: (frame: RoomFrame) => void;
  reject: (error: CrosstalkError) => void;
  timer: ReturnType<typeof setTimeout>;
};

export class Requests {
  readonly #pending = new Map<string, Pending>();
  #next = 0;

  constructor(private readonly transport: Transport) {}

  /** Sends `frame` (its `ref` is assigned here) and resolves with the room's answer to it. */
  ask<K extends RequestType>(frame: Unsent<K> & { type: K }, timeoutMs = 30_000): Promise<ReplyOf<K>> {
    return new Promise<ReplyOf<K>>((resolve, reject) => {
      const closed = this.transport.closedError;
      if (closed) return reject(closed);
      const ref = `q${++this.#next}`;
      const full = { ...frame, ref } as Sent;
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new CrosstalkError("TIMEOUT", `no answer to ${frame.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      // Only a frame of the reply type reaches `resolve` (see `receive`).
      const pending: Pending = {
        frame: full,
        sent: false,
        resolve: resolve as (frame: RoomFrame) => void,
        reject,
        timer,
      };
      this.#pending.set(ref, pending);
      pending.sent = this.transport.send(full);
    });
  }

  /**
   * Like `ask`, but asks again after a retryable failure (the socket dropped, no answer in
   * time) until answered or refused: for requests a subscription cannot start without.
   */
  async askUntilAnswered<K extends RequestType>(frame: Unsent<K> & { type: K }): Promise<ReplyOf<K>> {
    for (;;) {
      try {
        return await this.ask<K>(frame);
      } catch (error) {
        if (!(error instanceof CrosstalkError) || !error.retryable || this.transport.status === "closed") throw error;
      }
    }
  }

  /**
   * Routes an answer; false when `ref` is not ours. A frame of another type than the request's
   * reply is the room breaking the protocol: the request fails with INTERNAL.
   */
  receive(ref: string, frame: RoomFrame): boolean {
    const pending = this.#pending.get(ref);
    if (!pending) return false;
    this.#pending.delete(ref);
    clearTimeout(pending.timer);
    const expected = replies[pending.frame.type];
    if (frame.type === "error") pending.reject(CrosstalkError.from(frame.error));
    else if (frame.type !== expected)
      pending.reject(
        new CrosstalkError("INTERNAL", `the room answered ${pending.frame.type} with ${frame.type}, not ${expected}`),
      );
    else pending.resolve(frame);
    return true;
  }

  online(): void {
    for (const p of this.#pending.values()) if (!p.sent) p.sent = this.transport.send(p.frame);
  }

  offline(): void {
    for (const [ref, p] of this.#pending) {
      if (!p.sent) continue;
      this.#pending.delete(ref);
      clearTimeout(p.timer);
      p.reject(new CrosstalkError("OFFLINE", `connection lost during ${p.frame.type}`));
    }
  }

  failAll(error: CrosstalkError): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    this.#pending.clear();
  }
}
