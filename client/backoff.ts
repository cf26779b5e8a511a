/** Waiting between attempts: shared by event redelivery and call retries. */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Exponential backoff with full jitter (a uniform draw below `baseMs · 2^attempt`, capped),
 * so retrying agents spread out instead of retrying in step. `attempt` counts from 0.
 */
export const backoff = (attempt: number, { baseMs, capMs }: { baseMs: number; capMs: number }): number =>
  Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
