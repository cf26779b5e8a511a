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
 * The callee's side of the same promise: before the request goes out, the room records which
 * agent runs it (`{ runningOn }` under the same key). When that agent's link drops, the call
 * is *in doubt* — the handler may have run, and only that agent knows — so the room neither
 * fails it nor sends it elsewhere: it waits for the agent to come back (at most until the
 * call's deadline, capped by `inDoubtGraceMs`), then sends the request again, and the
 * agent's client answers from its memory of the key instead of running the handler twice.
 * After a room restart the `runningOn` record sends a retry back to the same agent. Only
 * when the agent stays away past the grace is the call given up (TARGET_GONE) and the record
 * dropped, so a retry may run elsewhere: at least once, for a callee that crashed.
 *
 * Everything else in flight is memory-only: a room restart drops every socket, and callers
 * see OFFLINE (or, for idempotent calls, retry and are answered as above).
 */
import type { ClientFrame, ErrorBody, ErrorCode, MethodInfo, RoomFrame, Target } from "../protocol/index.ts";
import type { RoomContext } from "./context.ts";
import { Deadlines } from "./deadlines.ts";
import type { RoomModule } from "./handlers.ts";
import { keys } from "./keys.ts";
import type { Metrics } from "./metrics.ts";
import type { OtlpExport } from "./otlp.ts";
import type { Presence } from "./presence.ts";
import type { Session } from "./session.ts";
import type { KvStorage } from "./storage.ts";
import type { TraceLog } from "./trace.ts";

type CallFrame = Extract<ClientFrame, { type: "rpc.call" }>;
type ResultFrame = Extract<ClientFrame, { type: "rpc.result" }>;
type RequestFrame = Extract<RoomFrame, { type: "rpc.request" }>;
type Answer = { ok: true; output: Extract<ResultFrame, { ok: true }>["output"] } | { ok: false; error: ErrorBody };

type Waiter = { session: Session; ref: string };
type InFlight = {
  id: string;
  method: string;
  /** The target the caller named (agent or role): a retry under the same key must name it too. */
  to: Target;
  startedAt: number;
  from: string;
  /** Who waits for the answer: the caller, and for idempotent calls any retry of it. */
  waiters: Waiter[];
  /** The session running the call; null while an idempotent call is in doubt (its callee's link dropped). */
  callee: Session | null;
  /** The agent the call went to: an in-doubt call waits for this agent, and only it may answer. */
  calleeAgent: string;
  /** The request as sent, sent again when an in-doubt callee comes back. */
  request: RequestFrame;
  /** Room clock after which the caller no longer waits; an in-doubt call waits no longer either. */
  deadline: number;
  /** While in doubt: when the room stops waiting for the callee. */
  grace?: ReturnType<typeof setTimeout>;
  /** The storage key of an idempotent call's result. */
  idem: string | null;
};

/**
 * What the room keeps per caller and idempotency key: the answer, or (while the call runs)
 * which agent it was sent to — the only one that may hold its answer after a room restart.
 */
type IdemRecord =
  | { answer: Answer; expiresAt: number }
  /** `to` and `method` name the call, so the key cannot later send a different call to that agent. */
  | { runningOn: string; to?: Target; method?: string; expiresAt: number };

/** Whether two targets name the same agent or role. */
const sameTarget = (a: Target, b: Target): boolean =>
  typeof a === "string" ? a === b : typeof b !== "string" && a.role === b.role;

export type RouterOptions = {
  /** How long an idempotent call's result is kept. */
  idempotencyWindowMs: number;
  /** Calls routed to one agent at once, unless it announces its own cap. */
  defaultMaxInFlight: number;
  /**
   * How long an in-doubt idempotent call waits for its callee to reconnect (never past the
   * call's deadline). Longer than a reconnect, shorter than a crash takes to notice.
   */
  inDoubtGraceMs: number;
  /**
   * A call to an agent (or role) that was connected this recently gets NO_ROUTE with
   * `details.recentlyGone`, which a caller with `retries` retries: it is probably reconnecting.
   */
  recentlyGoneMs: number;
};

/** Who left recently, and what they served: a NO_ROUTE to them is worth a retry. */
type Departed = { role: string; methods: string[]; leftAt: number };

export class Router {
  #next = 0;
  /**
   * Call ids are sent to callees and may come back after a room restart (a reply outbox):
   * a per-incarnation prefix keeps an old id from answering a new call.
   */
  readonly #incarnation = crypto.randomUUID().slice(0, 8);
  /** Room call id → call. */
  readonly #calls = new Map<string, InFlight>();
  /** Each call's deadline, on one host timer (a timer per call cost workerd as much as the call). */
  readonly #deadlines = new Deadlines<string>((id, ms) => this.#timeout(id, ms));
  /** `${session.n}:${ref}` → room call id, for cancels. */
  readonly #byRef = new Map<string, string>();
  /** How many `#byRef` entries each caller has. */
  readonly #callsBy = new WeakMap<Session, number>();
  /** Idempotent calls running now, by `<agent>:<key>`. */
  readonly #running = new Map<string, string>();
  /** Calls routed to each callee session right now. */
  readonly #load = new Map<Session, number>();
  readonly #maxInFlight = new Map<Session, number>();
  /** In-doubt calls by the agent they wait for. */
  readonly #awaiting = new Map<string, Set<string>>();
  /** Agents that left within `recentlyGoneMs`, oldest first. */
  readonly #departed = new Map<string, Departed>();
  /** What each session's methods are, as announced with `rpc.handle` (for A2A cards). */

  private readonly presence: Presence;
  private readonly storage: KvStorage;
  private readonly now: () => number;
  private readonly metrics: Metrics;
  private readonly spans: OtlpExport | undefined;

  constructor(
    ctx: RoomContext,
    private readonly options: RouterOptions,
    /** Where finished calls are recorded for `trace`. */
    private readonly traces: TraceLog,
  ) {
    ({ presence: this.presence, storage: this.storage, now: this.now, metrics: this.metrics, spans: this.spans } = ctx);
  }

  /** Calls `caller` awaits an answer to (the room's `maxCallsInFlight` limit). */
  callsBy(caller: Session): number {
    return this.#callsBy.get(caller) ?? 0;
  }

  #countCall(caller: Session, by: 1 | -1): void {
    const n = (this.#callsBy.get(caller) ?? 0) + by;
    if (n > 0) this.#callsBy.set(caller, n);
    else this.#callsBy.delete(caller);
  }

  get inFlight(): number {
    return this.#calls.size;
  }

  setMaxInFlight(session: Session, max: number | undefined): void {
    if (max === undefined) this.#maxInFlight.delete(session);
    else this.#maxInFlight.set(session, max);
  }

  maxInFlightOf(session: Session): number | undefined {
    return this.#maxInFlight.get(session);
  }

  /** Records what `session`'s methods are (`rpc.handle` `info`); the roster shows it too. */
  describe(session: Session, info: Readonly<Record<string, MethodInfo>> | undefined): void {
    session.methodInfo = info;
  }

  infoOf(session: Session, method: string): MethodInfo | undefined {
    return session.methodInfo?.[method];
  }

  /** The session to send a call to, or why there is none. */
  route(to: Target, method: string): { ok: true; callee: Session } | { ok: false; error: ErrorBody } {
    if (typeof to === "string") {
      const callee = this.presence.get(to);
      if (!callee) return { ok: false, error: this.#noRoute(to, method) };
      if (!callee.methods.includes(method)) {
        return { ok: false, error: { code: "NO_ROUTE", message: `agent ${to} does not serve ${method}` } };
      }
      const load = this.#load.get(callee) ?? 0;
      if (load >= (this.#maxInFlight.get(callee) ?? this.options.defaultMaxInFlight)) {
        return { ok: false, error: { code: "OVERLOADED", message: `agent ${to} has ${load} calls in flight` } };
      }
      return { ok: true, callee };
    }
    // By role: the least busy live agent of it that serves the method and has room.
    const cap = (s: Session) => this.#maxInFlight.get(s) ?? this.options.defaultMaxInFlight;
    const load = (s: Session) => this.#load.get(s) ?? 0;
    let best: Session | null = null;
    let serving = 0;
    for (const s of this.presence.sessions()) {
      if (s.role !== to.role || !s.methods.includes(method)) continue;
      serving++;
      if (load(s) < cap(s) && (!best || load(s) < load(best))) best = s;
    }
    if (best) return { ok: true, callee: best };
    if (serving === 0) return { ok: false, error: this.#noRoute(to, method) };
    return {
      ok: false,
      error: { code: "OVERLOADED", message: `all ${serving} agents of role ${to.role} are at capacity` },
    };
  }

  /**
   * NO_ROUTE for a target with no live agent. When one that served `method` left within
   * `recentlyGoneMs`, the error says so (`details.recentlyGone`): a caller with retries
   * waits for it instead of failing while it reconnects.
   */
  #noRoute(to: Target, method: string): ErrorBody {
    const now = this.now();
    // By role: what the NoLiveMember alert watches (a call to one agent id is not a team's gap).
    if (typeof to !== "string") this.metrics.noRoute.inc({ role: to.role });
    const what =
      typeof to === "string" ? `agent ${to} is not connected` : `no live agent of role ${to.role} serves ${method}`;
    let leftAt: number | null = null;
    for (const [agent, d] of this.#departed) {
      if (now - d.leftAt > this.options.recentlyGoneMs || !d.methods.includes(method)) continue;
      if (typeof to === "string" ? agent === to : d.role === to.role) leftAt = Math.max(leftAt ?? 0, d.leftAt);
    }
    if (leftAt === null) return { code: "NO_ROUTE", message: what };
    return {
      code: "NO_ROUTE",
      message: `${what}; it left ${now - leftAt} ms ago and may be reconnecting`,
      details: { recentlyGone: true, leftAt },
    };
  }

  /**
   * Routes `caller`'s call. A plain call is handled at once (no promise: most of the room's
   * frames are calls and their answers); an idempotent one waits for its record in storage.
   */
  call(caller: Session, frame: CallFrame): Promise<void> | void {
    const refKey = `${caller.n}:${frame.ref}`;
    if (this.#byRef.has(refKey))
      return this.#reply(caller, frame.ref, {
        ok: false,
        error: { code: "CONFLICT", message: `call ref ${frame.ref} is already in flight` },
      });
    if (frame.idempotencyKey) return this.#callIdempotent(caller, frame, refKey, frame.idempotencyKey);
    const callee = this.#routed(caller, frame);
    if (callee) callee.sendFrame(this.#start(caller, frame, refKey, callee, callee.agent, null).request);
  }

  #reply(caller: Session, ref: string, answer: Answer): void {
    caller.sendFrame(responseFrame(ref, answer));
  }

  /** The session `frame` goes to, or null once the caller has its NO_ROUTE or OVERLOADED. */
  #routed(caller: Session, frame: CallFrame): Session | null {
    const route = this.route(frame.to, frame.method);
    if (route.ok) return route.callee;
    this.metrics.calls.inc({ method: frame.method, outcome: route.error.code });
    this.#reply(caller, frame.ref, { ok: false, error: route.error });
    return null;
  }

  async #callIdempotent(caller: Session, frame: CallFrame, refKey: string, key: string): Promise<void> {
    const idem = keys.idempotent(caller.agent, key);
    /** The agent an earlier attempt of this idempotent call went to (before a room restart). */
    let pinned: string | null = null;
    // A retry of a call still running waits for the same answer.
    if (this.#joinRunning(idem, caller, frame)) return;
    const stored = await this.storage.get<IdemRecord>(idem);
    // The storage read yielded: a concurrent retry may have started the call meanwhile.
    if (this.#joinRunning(idem, caller, frame)) return;
    if (stored && stored.expiresAt > this.now()) {
      if ("answer" in stored) return this.#reply(caller, frame.ref, stored.answer);
      // Only a retry of the same call goes back to that agent: `authorize` judged this frame's
      // target and method, and a reused key must not carry the call somewhere else.
      const { to, method } = stored;
      if (to !== undefined && method !== undefined && (method !== frame.method || !sameTarget(to, frame.to)))
        return this.#reply(caller, frame.ref, { ok: false, error: this.#keyReused(key) });
      pinned = stored.runningOn;
    }

    let callee: Session | null;
    if (pinned !== null) {
      // Only that agent may hold the answer: it gets the call, or the call waits for it.
      callee = this.presence.get(pinned) ?? null;
    } else {
      callee = this.#routed(caller, frame);
      if (!callee) return;
    }
    const calleeAgent = callee?.agent ?? (pinned as string);
    const call = this.#start(caller, frame, refKey, callee, calleeAgent, idem);
    const { id, request } = call;
    this.#running.set(idem, id);
    if (!callee) return this.#inDoubt(call);
    // Recorded before the request goes out: after a room restart a retry comes back here.
    const record: IdemRecord = {
      runningOn: calleeAgent,
      to: frame.to,
      method: frame.method,
      expiresAt: this.now() + this.options.idempotencyWindowMs,
    };
    try {
      await this.storage.put({ [idem]: record });
    } catch (error) {
      // Not sent, so not run: the caller may retry. The call must not linger holding a slot.
      console.error("[crosstalk] storing an idempotent call's record failed", error);
      return this.#finish(id, {
        ok: false,
        error: { code: "INTERNAL", message: "the room could not record the call" },
      });
    }
    // While storing, the call may have ended or its callee dropped (then it is in doubt, and
    // `#resume` sends it when the callee returns: not here as well).
    if (this.#calls.get(id) === call && call.callee === callee) callee.sendFrame(request);
  }

  /** Records a call going to `calleeAgent` (its session, or null while in doubt); returns it. */
  #start(
    caller: Session,
    frame: CallFrame,
    refKey: string,
    callee: Session | null,
    calleeAgent: string,
    idem: string | null,
  ): InFlight {
    const id = `c${this.#incarnation}.${++this.#next}`;
    const deadline = this.now() + frame.timeoutMs;
    const request: RequestFrame = {
      type: "rpc.request",
      id,
      from: caller.agent,
      method: frame.method,
      input: frame.input,
      deadline,
    };
    // Set, not spread: no temporary object per call. The callee's span is a child of the caller's.
    if (frame.callId) request.callId = frame.callId;
    if (frame.correlationId) request.correlationId = frame.correlationId;
    if (frame.causationId) request.causationId = frame.causationId;
    if (frame.idempotencyKey) request.idempotencyKey = frame.idempotencyKey;
    if (frame.traceparent) request.traceparent = frame.traceparent;
    const call: InFlight = {
      id,
      method: frame.method,
      to: frame.to,
      startedAt: this.now(),
      from: caller.agent,
      waiters: [{ session: caller, ref: frame.ref }],
      callee,
      calleeAgent,
      request,
      deadline,
      idem,
    };
    this.#calls.set(id, call);
    this.#deadlines.add(id, frame.timeoutMs);
    this.#byRef.set(refKey, id);
    this.#countCall(caller, 1);
    if (callee) this.#load.set(callee, (this.#load.get(callee) ?? 0) + 1);
    return call;
  }

  /** CONFLICT: an idempotency key names one call; a different target or method under it is refused. */
  #keyReused(key: string): ErrorBody {
    return {
      code: "CONFLICT",
      message: `idempotency key ${JSON.stringify(key).slice(0, 80)} was used for a call to another target or method`,
    };
  }

  /**
   * Adds a waiter to the running idempotent call `idem`, if there is one (answering CONFLICT
   * when this frame names another target or method under the same key).
   */
  #joinRunning(idem: string, caller: Session, frame: CallFrame): boolean {
    const ref = frame.ref;
    const id = this.#running.get(idem);
    const call = id ? this.#calls.get(id) : undefined;
    if (!call) return false;
    if (call.method !== frame.method || !sameTarget(call.to, frame.to)) {
      caller.sendFrame({ type: "rpc.response", ref, ok: false, error: this.#keyReused(frame.idempotencyKey ?? "") });
      return true;
    }
    call.waiters.push({ session: caller, ref });
    this.#byRef.set(`${caller.n}:${ref}`, call.id);
    this.#countCall(caller, 1);
    return true;
  }

  /** The callee's answer; a promise only for an idempotent call, whose answer is stored first. */
  result(callee: Session, frame: ResultFrame): ErrorBody | null | Promise<ErrorBody | null> {
    const call = this.#calls.get(frame.id);
    // A late answer (after timeout or cancel) of a plain call is dropped: the caller moved on.
    if (!call) return null;
    // The agent, not the socket: an answer may come over the callee's next connection.
    if (call.calleeAgent !== callee.agent)
      return { code: "FORBIDDEN", message: `call ${frame.id} was not sent to this agent` };
    const answer: Answer = frame.ok ? { ok: true, output: frame.output } : { ok: false, error: frame.error };
    if (call.idem) return this.#storeResult(call, call.idem, answer);
    this.#finish(call.id, answer);
    return null;
  }

  async #storeResult(call: InFlight, idem: string, answer: Answer): Promise<null> {
    // Stored before anyone sees it: a retry after this point is answered from storage.
    const record: IdemRecord = { answer, expiresAt: this.now() + this.options.idempotencyWindowMs };
    await this.storage.put({ [idem]: record });
    this.#finish(call.id, answer);
    return null;
  }

  progress(callee: Session, id: string, data: unknown): void {
    const call = this.#calls.get(id);
    if (!call || call.calleeAgent !== callee.agent) return;
    for (const w of call.waiters) w.session.sendFrame({ type: "rpc.progress", ref: w.ref, data: data as never });
  }

  cancel(caller: Session, ref: string, reason: "CANCELLED" | "TIMEOUT" = "CANCELLED"): void {
    const id = this.#byRef.get(`${caller.n}:${ref}`);
    const call = id ? this.#calls.get(id) : undefined;
    if (!call) return;
    if (this.#byRef.delete(`${caller.n}:${ref}`)) this.#countCall(caller, -1);
    call.waiters = call.waiters.filter((w) => !(w.session === caller && w.ref === ref));
    // An idempotent call keeps running for its result; a plain one is aborted.
    if (call.waiters.length === 0 && !call.idem) this.#finish(call.id, null, reason);
  }

  /**
   * Ends `caller`'s call `ref` for everyone, idempotent or not (the A2A gateway's `CancelTask`):
   * waiters get CANCELLED, the callee gets `rpc.abort` (its signal fires), and an idempotent
   * call's key remembers CANCELLED, so a retry does not run it again. False if not in flight.
   */
  async abort(caller: Session, ref: string): Promise<boolean> {
    const id = this.#byRef.get(`${caller.n}:${ref}`);
    const call = id ? this.#calls.get(id) : undefined;
    if (!call) return false;
    const answer: Answer = { ok: false, error: { code: "CANCELLED", message: "the caller cancelled the call" } };
    if (call.idem) {
      const record: IdemRecord = { answer, expiresAt: this.now() + this.options.idempotencyWindowMs };
      await this.storage.put({ [call.idem]: record });
    }
    this.#finish(call.id, answer, "CANCELLED");
    return true;
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
      if (this.#byRef.delete(`${w.session.n}:${w.ref}`)) this.#countCall(w.session, -1);
      w.session.sendFrame(responseFrame(w.ref, answer));
    }
    call.waiters = [];
  }

  /**
   * `session` is gone. Plain calls to it fail with TARGET_GONE; idempotent ones are in doubt
   * and wait for the agent to come back. Plain calls it was waiting for are aborted.
   */
  gone(session: Session): void {
    for (const call of [...this.#calls.values()]) {
      if (call.callee === session) {
        if (call.idem) this.#inDoubt(call);
        else
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
    this.#depart(session);
  }

  /** Remembers that `session` served its methods until now; forgets departures past the window. */
  #depart(session: Session): void {
    const now = this.now();
    this.#departed.delete(session.agent);
    this.#departed.set(session.agent, { role: session.role, methods: session.methods, leftAt: now });
    for (const [agent, d] of this.#departed) {
      if (now - d.leftAt <= this.options.recentlyGoneMs) break;
      this.#departed.delete(agent);
    }
  }

  /**
   * `session` was admitted: in-doubt calls waiting for its agent go to it again. Its
   * departure stays on record until it ages out: the new session serves nothing until it
   * announces its methods, and a call meanwhile should still be retried.
   */
  returned(session: Session): void {
    const ids = this.#awaiting.get(session.agent);
    if (!ids) return;
    this.#awaiting.delete(session.agent);
    for (const id of ids) {
      const call = this.#calls.get(id);
      if (call) this.#resume(call, session);
    }
  }

  /**
   * The callee of idempotent `call` dropped: the handler may have run, and only that agent
   * knows. Wait for it (bounded by the deadline and `inDoubtGraceMs`) instead of failing.
   */
  #inDoubt(call: InFlight): void {
    const old = call.callee;
    if (old) {
      const load = (this.#load.get(old) ?? 1) - 1;
      if (load > 0) this.#load.set(old, load);
      else this.#load.delete(old);
    }
    call.callee = null;
    // Its replacement may be mid-admission (a socket replaced by the same client, or a
    // takeover): it gets the call from `returned`, right after its welcome, not before it.
    const back = this.presence.get(call.calleeAgent);
    const returning = back !== undefined && back !== old && !back.closed;
    const wait = Math.min(this.options.inDoubtGraceMs, call.deadline - this.now());
    if (wait <= 0 && !returning) return this.#abandon(call);
    call.grace = setTimeout(() => this.#abandon(call), Math.max(wait, 0));
    const ids = this.#awaiting.get(call.calleeAgent) ?? new Set<string>();
    this.#awaiting.set(call.calleeAgent, ids.add(call.id));
  }

  /** Sends in-doubt `call` to its agent's new session; the agent answers from memory if it ran it. */
  #resume(call: InFlight, session: Session): void {
    clearTimeout(call.grace);
    call.grace = undefined;
    call.callee = session;
    this.#load.set(session, (this.#load.get(session) ?? 0) + 1);
    session.sendFrame(call.request);
  }

  /**
   * The callee did not come back in time: give the call up. Its `runningOn` record goes
   * too, so a retry may run elsewhere (at least once: the handler may have run).
   */
  #abandon(call: InFlight): void {
    if (this.#calls.get(call.id) !== call) return;
    if (call.idem) void this.storage.delete([call.idem]).catch(() => {});
    this.#finish(call.id, {
      ok: false,
      error: {
        code: "TARGET_GONE",
        message: `agent ${call.calleeAgent} disconnected before answering and did not come back in time`,
        details: { inDoubt: true },
      },
    });
  }

  /** Ends a call: answers its waiters (if `answer`) and aborts the callee (if `abort`). */
  #finish(id: string, answer: Answer | null, abort: ErrorCode | null = null): void {
    const call = this.#calls.get(id);
    if (!call) return;
    this.#deadlines.delete(id);
    this.#calls.delete(id);
    const outcome = answer ? (answer.ok ? "ok" : answer.error.code) : (abort ?? "aborted");
    const endedAt = this.now();
    this.metrics.calls.inc({ method: call.method, outcome });
    this.metrics.callSeconds.observe({ method: call.method }, (endedAt - call.startedAt) / 1000);
    if (this.spans && call.request.traceparent) {
      this.spans.add({
        name: `call ${call.method}`,
        parent: call.request.traceparent,
        startMs: call.startedAt,
        endMs: endedAt,
        attributes: { "crosstalk.call.id": call.id, "crosstalk.from": call.from, "crosstalk.to": call.calleeAgent },
        ...(outcome === "ok" ? {} : { error: outcome }),
      });
    }
    const { callId, correlationId, causationId } = call.request;
    if (callId && correlationId) {
      const detail = {
        from: call.from,
        to: call.calleeAgent,
        method: call.method,
        outcome,
        ms: endedAt - call.startedAt,
      };
      const ts = call.startedAt;
      // Two literals, not a spread: one object per record on a path every call takes.
      this.traces.add(
        causationId
          ? { kind: "call", id: callId, correlationId, causationId, detail, ts }
          : { kind: "call", id: callId, correlationId, detail, ts },
      );
    }
    if (call.idem && this.#running.get(call.idem) === id) this.#running.delete(call.idem);
    // Only in-doubt calls have one: no host call for the others.
    if (call.grace !== undefined) clearTimeout(call.grace);
    const awaiting = this.#awaiting.get(call.calleeAgent);
    // An agent that never comes back leaves no empty set behind.
    if (awaiting?.delete(id) && awaiting.size === 0) this.#awaiting.delete(call.calleeAgent);
    if (call.callee) {
      const load = (this.#load.get(call.callee) ?? 1) - 1;
      if (load > 0) this.#load.set(call.callee, load);
      else this.#load.delete(call.callee);
    }
    for (const w of call.waiters) {
      if (this.#byRef.delete(`${w.session.n}:${w.ref}`)) this.#countCall(w.session, -1);
      if (answer) w.session.sendFrame(responseFrame(w.ref, answer));
    }
    if (abort) call.callee?.sendFrame({ type: "rpc.abort", id, reason: abort });
  }
}

/** The caller's answer frame, built in one literal (the same keys, in the same order, as a spread of `answer`). */
function responseFrame(ref: string, answer: Answer): RoomFrame {
  return answer.ok
    ? { type: "rpc.response", ref, ok: true, output: answer.output }
    : { type: "rpc.response", ref, ok: false, error: answer.error };
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
      router.describe(session, frame.info);
      presence.changed(session);
    },
    "rpc.call": (session, frame) => router.call(session, frame),
    "rpc.cancel": (session, frame) => router.cancel(session, frame.ref, frame.reason),
    "rpc.result": (session, frame) => {
      const error = router.result(session, frame);
      if (error instanceof Promise) return error.then((e) => (e ? { error: e } : undefined));
      return error ? { error } : undefined;
    },
    "rpc.progress": (session, frame) => router.progress(session, frame.id, frame.data),
  },
});
