/**
 * Control requests that the room answers with a frame carrying the same `ref` (history
 * pages, consumer positions, group joins). A request made offline waits for the next
 * connection; one in flight when the socket drops fails with OFFLINE, so the caller decides
 * whether to ask again. Not re-exported from the package entry point; `team.ts` owns it.
 */
import { type ClientFrame, CrosstalkError, type RoomFrame } from "../protocol/index.ts";
import type { Transport } from "./transport.ts";

type WithRef = Extract<ClientFrame, { ref: string }>;
/** A request frame without its `ref`, per frame type. */
type Unsent = WithRef extends infer F ? (F extends WithRef ? Omit<F, "ref"> : never) : never;
type Pending = {
  frame: WithRef;
  sent: boolean;
  resolve: (frame: RoomFrame) => void;
  reject: (error: CrosstalkError) => void;
  timer: ReturnType<typeof setTimeout>;
};

export class Requests {
  readonly #pending = new Map<string, Pending>();
  #next = 0;

  constructor(private readonly transport: Transport) {}

  /** Sends `frame` (its `ref` is assigned here) and resolves with the room's answer. */
  ask(frame: Unsent, timeoutMs = 30_000): Promise<RoomFrame> {
    return new Promise((resolve, reject) => {
      const ref = `q${++this.#next}`;
      const full = { ...frame, ref } as WithRef;
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new CrosstalkError("TIMEOUT", `no answer to ${frame.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      const pending: Pending = { frame: full, sent: false, resolve, reject, timer };
      this.#pending.set(ref, pending);
      pending.sent = this.transport.send(full);
    });
  }

  /**
   * Like `ask`, but asks again after a retryable failure (the socket dropped, no answer in
   * time) until answered or refused: for requests a subscription cannot start without.
   */
  async askUntilAnswered(frame: Unsent): Promise<RoomFrame> {
    for (;;) {
      try {
        return await this.ask(frame);
      } catch (error) {
        if (!(error instanceof CrosstalkError) || !error.retryable || this.transport.status === "closed") throw error;
      }
    }
  }

  /** Routes an answer; false when `ref` is not ours. */
  receive(ref: string, frame: RoomFrame): boolean {
    const pending = this.#pending.get(ref);
    if (!pending) return false;
    this.#pending.delete(ref);
    clearTimeout(pending.timer);
    if (frame.type === "error") pending.reject(CrosstalkError.from(frame.error));
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
