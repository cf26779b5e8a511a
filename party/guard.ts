/**
 * Per-connection limits: what one socket may hold and how fast it may go, so that no client
 * — compromised, buggy or hostile — can exhaust the room. `dispatch.ts` asks the guard before
 * a frame's handler runs (nothing above a limit is applied) and tells it about every refusal;
 * a connection that spends its error budget is closed with `TooManyErrors`.
 *
 * The limits and their defaults are `DEFAULT_ROOM_LIMITS` (protocol/limits.ts); the room's
 * variables override them ({@link limitsFromEnv}).
 */
import {
  type ClientFrame,
  DEFAULT_ROOM_LIMITS,
  type ErrorBody,
  type ErrorCode,
  type RoomLimits,
} from "../protocol/index.ts";
import type { Session } from "./session.ts";

/** The room variable that overrides each limit (`--var CROSSTALK_MAX_OPEN_DOCS=128`). */
export const LIMIT_VARS: { readonly [K in keyof RoomLimits]: string } = {
  maxFrameBytes: "CROSSTALK_MAX_FRAME_BYTES",
  maxUpdateBytes: "CROSSTALK_MAX_UPDATE_BYTES",
  maxDocDepth: "CROSSTALK_MAX_DOC_DEPTH",
  maxOpenDocs: "CROSSTALK_MAX_OPEN_DOCS",
  maxCallsInFlight: "CROSSTALK_MAX_CALLS_IN_FLIGHT",
  publishRate: "CROSSTALK_PUBLISH_RATE",
  publishBurst: "CROSSTALK_PUBLISH_BURST",
  maxConnectionsPerAgent: "CROSSTALK_MAX_CONNECTIONS_PER_AGENT",
  maxSubscriptions: "CROSSTALK_MAX_SUBSCRIPTIONS",
  errorBudget: "CROSSTALK_ERROR_BUDGET",
  maxUnreadBytes: "CROSSTALK_MAX_UNREAD_BYTES",
};

/**
 * The limits set by the room's variables: positive integers only; anything else is ignored
 * with a warning. The frame size can only go down (PartyKit refuses messages above 1 MB).
 */
export function limitsFromEnv(env: Record<string, unknown>): Partial<RoomLimits> {
  const out: Partial<RoomLimits> = {};
  for (const [key, name] of Object.entries(LIMIT_VARS) as [keyof RoomLimits, string][]) {
    if (env[name] === undefined || env[name] === "") continue;
    const value = Number(env[name]);
    if (!Number.isSafeInteger(value) || value <= 0) {
      console.warn(`[crosstalk] ignoring ${name}=${String(env[name])}: not a positive integer`);
      continue;
    }
    out[key] = key === "maxFrameBytes" ? Math.min(value, DEFAULT_ROOM_LIMITS.maxFrameBytes) : value;
  }
  return out;
}

/** What the guard counts that other modules hold. */
export type GuardCounts = {
  /** Calls `session` made that await an answer. */
  callsInFlight(session: Session): number;
  /** Feeds and consumer-group memberships of `session`. */
  subscriptions(session: Session): number;
  /** Whether `session` already has this subscription (reopening one costs nothing). */
  subscribed(session: Session, frame: ClientFrame): boolean;
};

/**
 * Refusals that an honest client does not send in bulk: they spend the error budget. Not
 * LIMIT_EXCEEDED or RATE_LIMITED: an honest burst (a thousand concurrent calls) may meet
 * those, and refusing them costs the room little.
 */
const SPENDS_BUDGET: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "BAD_FRAME",
  "UNKNOWN_FRAME",
  "TOO_LARGE",
  "FORBIDDEN",
  "UNAUTHORIZED",
]);

type SessionState = {
  /** Publish tokens left (events), and when they were last topped up. */
  tokens: number;
  toppedAt: number;
  /** Errors left in the budget, and when one was last forgiven. */
  budget: number;
  forgivenAt: number;
};

export class Guard {
  readonly #state = new WeakMap<Session, SessionState>();

  constructor(
    readonly limits: RoomLimits,
    private readonly counts: GuardCounts,
    private readonly now: () => number = Date.now,
  ) {}

  #of(session: Session): SessionState {
    let state = this.#state.get(session);
    if (!state) {
      const at = this.now();
      state = { tokens: this.limits.publishBurst, toppedAt: at, budget: this.limits.errorBudget, forgivenAt: at };
      this.#state.set(session, state);
    }
    return state;
  }

  /** A frame's size on the wire, before it is parsed or reassembled. */
  size(bytes: number): ErrorBody | null {
    if (bytes <= this.limits.maxFrameBytes) return null;
    return limitError("TOO_LARGE", "maxFrameBytes", this.limits.maxFrameBytes, `a frame of ${bytes} bytes`);
  }

  /** Checks a parsed frame against the connection's limits; null when its handler may run. */
  admit(session: Session, frame: ClientFrame): ErrorBody | null {
    const { limits, counts } = this;
    switch (frame.type) {
      case "publish":
        return this.#publish(session, frame.events.length);
      case "rpc.call": {
        const calls = counts.callsInFlight(session);
        if (calls < limits.maxCallsInFlight) return null;
        return limitError("LIMIT_EXCEEDED", "maxCallsInFlight", limits.maxCallsInFlight, `${calls} calls in flight`);
      }
      case "feed.open":
      case "group.join": {
        const subs = counts.subscriptions(session);
        if (subs < limits.maxSubscriptions || counts.subscribed(session, frame)) return null;
        return limitError("LIMIT_EXCEEDED", "maxSubscriptions", limits.maxSubscriptions, `${subs} subscriptions`);
      }
      default:
        return null;
    }
  }

  /** The token bucket: `publishBurst` events at once, refilled at `publishRate` per second. */
  #publish(session: Session, events: number): ErrorBody | null {
    const state = this.#of(session);
    const now = this.now();
    const { publishRate, publishBurst } = this.limits;
    state.tokens = Math.min(publishBurst, state.tokens + ((now - state.toppedAt) / 1000) * publishRate);
    state.toppedAt = now;
    if (events <= state.tokens) {
      state.tokens -= events;
      return null;
    }
    const retryAfterMs = Math.ceil(((events - state.tokens) / publishRate) * 1000);
    return {
      code: "RATE_LIMITED",
      message: `this connection publishes faster than ${publishRate} events/s (burst ${publishBurst}); retry in ${retryAfterMs} ms`,
      details: { limit: "publishRate", max: publishRate, burst: publishBurst, retryAfterMs },
    };
  }

  /**
   * A frame of `session` was refused with `code`. True when the connection has now spent its
   * error budget (one error is forgiven per second) and must be closed.
   */
  refused(session: Session, code: ErrorCode): boolean {
    if (!SPENDS_BUDGET.has(code)) return false;
    const state = this.#of(session);
    const now = this.now();
    const forgiven = Math.floor((now - state.forgivenAt) / 1000);
    if (forgiven > 0) {
      state.budget = Math.min(this.limits.errorBudget, state.budget + forgiven);
      state.forgivenAt += forgiven * 1000;
    }
    state.budget -= 1;
    return state.budget <= 0;
  }
}

function limitError(
  code: "TOO_LARGE" | "LIMIT_EXCEEDED",
  limit: keyof RoomLimits,
  max: number,
  what: string,
): ErrorBody {
  return {
    code,
    message: `${what}: this connection may have at most ${max} (${limit}); nothing was applied`,
    details: { limit, max },
  };
}
