/**
 * Direct calls: the room routes `rpc.call` from a caller to a callee's live session
 * (an agent id, or the least busy live agent of a role that serves the method), relays
 * progress and the answer back, and fails calls promptly when the callee goes away or the
 * deadline passes.
 *
 * Idempotent calls (`idempotencyKey`): the room runs a call at most once per caller agent and
 * key. A second call with the same key while the first runs waits for the same answer; once
 * answered, the result is stored (`idem|<agent>|<key>`) for the idempotency window, so a
 * caller that lost the reply (offline, crashed) gets it on retry. Such a call is not aborted
 * when its caller disconnects, so its result can still be stored.
 *
 * Everything else in flight is memory-only: a room restart drops every socket, and callers
 * see OFFLINE (or, for idempotent calls, retry and are answered from the stored result).
 */
import type { ClientFrame, ErrorBody, ErrorCode, Target } from "../protocol/index.ts";
import type { RoomContext } from "./context.ts";
import type { RoomModule } from "./handlers.ts";
import { keys } from "./keys.ts";
import type { Metrics } from "./metrics.ts";
import type { Presence } from "./presence.ts";
import type { Session } from "./session.ts";
import type { KvStorage } from "./storage.ts";
import type { TraceLog } from "./trace.ts";

type CallFrame = Extract<ClientFrame, { type: "rpc.call" }>;
type ResultFrame = Extract<ClientFrame, { type: "rpc.result" }>;
type Answer = { ok: true; output: Extract<ResultFrame, { ok: true }>["output"] } | { ok: false; error: ErrorBody };

type Waiter = { session: Session; ref: string };
type InFlight = {
  id: string;
  method: string;
  startedAt: number;
  from: string;
  trace: { callId?: string; correlationId?: string; causationId?: string };
  /** Who waits for the answer: the caller, and for idempotent calls any retry of it. */
  waiters: Waiter[];
  callee: Session;
  timer: ReturnType<typeof setTimeout>;
  /** The storage key of an idempotent call's result. */
  idem: string | null;
};

type IdemRecord = { answer: Answer; expiresAt: number };

export type RouterOptions = {
  /** How long an idempotent call's result is kept. */
  idempotencyWindowMs: number;
  /** Calls routed to one agent at once, unless it announces its own cap. */
  defaultMaxInFlight: number;
};

export class Router {
  #next = 0;
  /** Room call id → call. */
  readonly #calls = new Map<string, InFlight>();
  /** `${session.n}:${ref}` → room call id, for cancels. */
  readonly #byRef = new Map<string, string>();
  /** Idempotent calls running now, by `<agent>:<key>`. */
  readonly #running = new Map<string, string>();
  /** Calls routed to each callee session right now. */
  readonly #load = new Map<Session, number>();
  readonly #maxInFlight = new Map<Session, number>();

  private readonly presence: Presence;
  private readonly storage: KvStorage;
  private readonly now: () => number;
  private readonly metrics: Metrics;

  constructor(
    ctx: RoomContext,
    private readonly options: RouterOptions,
    /** Where finished calls are recorded for `trace`. */
    private readonly traces: TraceLog,
  ) {
    ({ presence: this.presence, storage: this.storage, now: this.now, metrics: this.metrics } = ctx);
  }

  get inFlight(): number {
    return this.#calls.size;
  }

  setMaxInFlight(session: Session, max: number | undefined): void {
    if (max === undefined) this.#maxInFlight.delete(session);
    else this.#maxInFlight.set(session, max);
  }

  /** The session to send a call to, or why there is none. */
  route(to: Target, method: string): { ok: true; callee: Session } | { ok: false; error: ErrorBody } {
    const cap = (s: Session) => this.#maxInFlight.get(s) ?? this.options.defaultMaxInFlight;
    const load = (s: Session) => this.#load.get(s) ?? 0;
    if (typeof to === "string") {
      const callee = this.presence.get(to);
      if (!callee) return { ok: false, error: { code: "NO_ROUTE", message: `agent ${to} is not connected` } };
      if (!callee.methods.includes(method)) {
        return { ok: false, error: { code: "NO_ROUTE", message: `agent ${to} does not serve ${method}` } };
      }
      if (load(callee) >= cap(callee)) {
        return { ok: false, error: { code: "OVERLOADED", message: `agent ${to} has ${load(callee)} calls in flight` } };
      }
      return { ok: true, callee };
    }
    let best: Session | null = null;
    let serving = 0;
    for (const s of this.presence.sessions()) {
      if (s.role !== to.role || !s.methods.includes(method)) continue;
      serving++;
      if (load(s) < cap(s) && (!best || load(s) < load(best))) best = s;
    }
    if (best) return { ok: true, callee: best };
    if (serving === 0)
      return { ok: false, error: { code: "NO_ROUTE", message: `no live agent of role ${to.role} serves ${method}` } };
    return {
      ok: false,
      error: { code: "OVERLOADED", message: `all ${serving} agents of role ${to.role} are at capacity` },
    };
  }

  async call(caller: Session, frame: CallFrame): Promise<void> {
    const reply = (answer: Answer) => caller.sendFrame({ type: "rpc.response", ref: frame.ref, ...answer });
    const refKey = `${caller.n}:${frame.ref}`;
    if (this.#byRef.has(refKey))
      return reply({ ok: false, error: { code: "CONFLICT", message: `call ref ${frame.ref} is already in flight` } });

    const idem = frame.idempotencyKey ? keys.idempotent(caller.agent, frame.idempotencyKey) : null;
    if (idem) {
      // A retry of a call still running waits for the same answer.
      if (this.#joinRunning(idem, caller, frame.ref)) return;
      const stored = await this.storage.get<IdemRecord>(idem);
      if (stored && stored.expiresAt > this.now()) return reply(stored.answer);
      // The storage read yielded: a concurrent retry may have started the call meanwhile.
      if (this.#joinRunning(idem, caller, frame.ref)) return;
    }

    const route = this.route(frame.to, frame.method);
    if (!route.ok) {
      this.metrics.calls.inc({ method: frame.method, outcome: route.error.code });
      return reply({ ok: false, error: route.error });
    }
    const { callee } = route;
    const id = `c${++this.#next}`;
    const deadline = this.now() + frame.timeoutMs;
    const timer = setTimeout(() => this.#timeout(id, frame.timeoutMs), frame.timeoutMs);
    this.#calls.set(id, {
      id,
      method: frame.method,
      startedAt: this.now(),
      from: caller.agent,
      trace: { callId: frame.callId, correlationId: frame.correlationId, causationId: frame.causationId },
      waiters: [{ session: caller, ref: frame.ref }],
      callee,
      timer,
      idem,
    });
    this.#byRef.set(refKey, id);
    if (idem) this.#running.set(idem, id);
    this.#load.set(callee, (this.#load.get(callee) ?? 0) + 1);
    callee.sendFrame({
      type: "rpc.request",
      id,
      from: caller.agent,
      method: frame.method,
      input: frame.input,
      deadline,
      ...(frame.callId ? { callId: frame.callId } : {}),
      ...(frame.correlationId ? { correlationId: frame.correlationId } : {}),
      ...(frame.causationId ? { causationId: frame.causationId } : {}),
    });
  }

  /** Adds a waiter to the running idempotent call `idem`, if there is one. */
  #joinRunning(idem: string, caller: Session, ref: string): boolean {
    const id = this.#running.get(idem);
    const call = id ? this.#calls.get(id) : undefined;
    if (!call) return false;
    call.waiters.push({ session: caller, ref });
    this.#byRef.set(`${caller.n}:${ref}`, call.id);
    return true;
  }

  async result(callee: Session, frame: ResultFrame): Promise<ErrorBody | null> {
    const call = this.#calls.get(frame.id);
    // A late answer (after timeout or cancel) of a plain call is dropped: the caller moved on.
    if (!call) return null;
    if (call.callee !== callee)
      return { code: "FORBIDDEN", message: `call ${frame.id} was not sent to this connection` };
    const answer: Answer = frame.ok ? { ok: true, output: frame.output } : { ok: false, error: frame.error };
    if (call.idem) {
      // Stored before anyone sees it: a retry after this point is answered from storage.
      const record: IdemRecord = { answer, expiresAt: this.now() + this.options.idempotencyWindowMs };
      await this.storage.put({ [call.idem]: record });
    }
    this.#finish(call.id, answer);
    return null;
  }

  progress(callee: Session, id: string, data: unknown): void {
    const call = this.#calls.get(id);
    if (!call || call.callee !== callee) return;
    for (const w of call.waiters) w.session.sendFrame({ type: "rpc.progress", ref: w.ref, data: data as never });
  }

  cancel(caller: Session, ref: string, reason: "CANCELLED" | "TIMEOUT" = "CANCELLED"): void {
    const id = this.#byRef.get(`${caller.n}:${ref}`);
    const call = id ? this.#calls.get(id) : undefined;
    if (!call) return;
    this.#byRef.delete(`${caller.n}:${ref}`);
    call.waiters = call.waiters.filter((w) => !(w.session === caller && w.ref === ref));
    // An idempotent call keeps running for its result; a plain one is aborted.
    if (call.waiters.length === 0 && !call.idem) this.#finish(call.id, null, reason);
  }

  /**
   * The deadline passed: waiters get TIMEOUT. A plain call is aborted at the callee; an
   * idempotent one keeps running so that its result is stored for a retry (at most once).
   */
  #timeout(id: string, timeoutMs: number): void {
    const call = this.#calls.get(id);
    if (!call) return;
    const answer: Answer = { ok: false, error: { code: "TIMEOUT", message: `no answer within ${timeoutMs} ms` } };
    if (!call.idem) return this.#finish(id, answer, "TIMEOUT");
    for (const w of call.waiters) {
      this.#byRef.delete(`${w.session.n}:${w.ref}`);
      w.session.sendFrame({ type: "rpc.response", ref: w.ref, ...answer });
    }
    call.waiters = [];
  }

  /** Fails calls to `session`, and aborts plain calls it was waiting for. */
  gone(session: Session): void {
    for (const call of [...this.#calls.values()]) {
      if (call.callee === session) {
        this.#finish(call.id, {
          ok: false,
          error: { code: "TARGET_GONE", message: `agent ${session.agent} disconnected before answering` },
        });
        continue;
      }
      const before = call.waiters.length;
      call.waiters = call.waiters.filter((w) => w.session !== session);
      if (before > 0 && call.waiters.length === 0 && !call.idem) this.#finish(call.id, null, "OFFLINE");
    }
    this.#load.delete(session);
    this.#maxInFlight.delete(session);
  }

  /** Ends a call: answers its waiters (if `answer`) and aborts the callee (if `abort`). */
  #finish(id: string, answer: Answer | null, abort: ErrorCode | null = null): void {
    const call = this.#calls.get(id);
    if (!call) return;
    clearTimeout(call.timer);
    this.#calls.delete(id);
    const outcome = answer ? (answer.ok ? "ok" : answer.error.code) : (abort ?? "aborted");
    this.metrics.calls.inc({ method: call.method, outcome });
    this.metrics.callSeconds.observe({ method: call.method }, (this.now() - call.startedAt) / 1000);
    const { callId, correlationId, causationId } = call.trace;
    if (callId && correlationId) {
      this.traces.add({
        kind: "call",
        id: callId,
        correlationId,
        ...(causationId ? { causationId } : {}),
        detail: {
          from: call.from,
          to: call.callee.agent,
          method: call.method,
          outcome,
          ms: this.now() - call.startedAt,
        },
        ts: call.startedAt,
      });
    }
    if (call.idem && this.#running.get(call.idem) === id) this.#running.delete(call.idem);
    const load = (this.#load.get(call.callee) ?? 1) - 1;
    if (load > 0) this.#load.set(call.callee, load);
    else this.#load.delete(call.callee);
    for (const w of call.waiters) {
      this.#byRef.delete(`${w.session.n}:${w.ref}`);
      if (answer) w.session.sendFrame({ type: "rpc.response", ref: w.ref, ...answer });
    }
    if (abort) call.callee.sendFrame({ type: "rpc.abort", id, reason: abort });
  }
}

/**
 * The frames of direct calls. The router answers a call itself (`rpc.response`, when the
 * callee answers or fails), so `rpc.call` returns nothing here.
 */
export const rpcModule = (
  router: Router,
  presence: Presence,
): RoomModule<"rpc.handle" | "rpc.call" | "rpc.cancel" | "rpc.result" | "rpc.progress"> => ({
  frames: {
    "rpc.handle": (session, frame) => {
      session.methods = [...new Set(frame.methods)];
      router.setMaxInFlight(session, frame.maxInFlight);
      presence.changed(session);
    },
    "rpc.call": (session, frame) => router.call(session, frame),
    "rpc.cancel": (session, frame) => router.cancel(session, frame.ref, frame.reason),
    "rpc.result": async (session, frame) => {
      const error = await router.result(session, frame);
      return error ? { error } : undefined;
    },
    "rpc.progress": (session, frame) => router.progress(session, frame.id, frame.data),
  },
});
