/**
 * Waiting between attempts, one module for both sides: the client retries event handlers
 * and calls, the room redelivers consumer-group events after a nak.
 */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * `endOfTick.then(fn)` runs `fn` at the end of this tick, as `queueMicrotask(fn)` does (the
 * same queue, the same order), without the host's wrapper per call (Node makes an
 * AsyncResource for each; workerd crosses into C++): both ends flush a tick's frames with it,
 * once per frame sent, a hot path.
 */
export const endOfTick: Promise<void> = Promise.resolve();

export type BackoffOptions = {
  /** The first delay's bound. */
  baseMs: number;
  /** No delay exceeds this. */
  capMs: number;
  /**
   * Full jitter (default true): a uniform draw below the bound, so agents retrying the same
   * thing spread out instead of retrying in step. The room passes false: it is one scheduler
   * whose redeliveries already go to whichever member is free, so there is no crowd of
   * independent retriers to spread, and a fixed delay keeps its pacing predictable.
   */
  jitter?: boolean;
};

/** The delay before retry `attempt` (from 0): `baseMs · 2^attempt`, capped, jittered unless told not to. */
export function backoff(attempt: number, { baseMs, capMs, jitter = true }: BackoffOptions): number {
  const bound = Math.min(capMs, baseMs * 2 ** attempt);
  return jitter ? Math.random() * bound : bound;
}
