/**
 * Waiting in tests, always bounded: state settles over a network (or the in-process room's
 * event loop), so a test polls for what it expects instead of sleeping a guessed time.
 */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type EventuallyOptions = {
  /** Give up after this long and throw what the last check threw (default 20 s). */
  timeoutMs?: number;
  /** Pause between checks (default 20 ms). */
  intervalMs?: number;
};

/** Polls `check` until it returns without throwing, and returns what it returned. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  { timeoutMs = 20_000, intervalMs = 20 }: EventuallyOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(intervalMs);
    }
  }
}
