/**
 * Direct messages, client side: serving methods, calling other agents through the room
 * (with deadlines, cancellation, retries, idempotency and progress) and fire-and-forget
 * sends with durable inboxes.
 * Not re-exported from the package entry point; `team.ts` owns it.
 */
import {
  backoff,
  type ClientFrame,
  CrosstalkError,
  ERROR_CODES,
  type ErrorBody,
  METHOD,
  type MethodInfo,
  methodInfoSchema,
  methodSchema,
  NAME,
  type RoomFrame,
  sleep,
  type Target,
  targetSchema,
  traceparentFor,
  uuidv7,
} from "../protocol/index.ts";
import { check } from "./check.ts";
import type { PublishOptions, PublishResult } from "./events.ts";
import { toJson } from "./json.ts";
import { CALL_INPUT, type EncryptionOptions, isSealed, keyIdFor, MESSAGE_INPUT, open, seal } from "./payload-crypto.ts";
import type { Persistence, StoredEntry, StoredOutcome } from "./persist.ts";
import type { Json } from "./state.ts";
import type { Transport } from "./transport.ts";

/** Trace ids that whatever a handler does inherits. */
export type Trace = {
  correlationId?: string;
  causationId?: string;
  /**
   * This item's own W3C trace context: a tracer (`crosstalk/otel`) passes the span it reports
   * for the item. Default: a fresh span in the correlation id's trace.
   */
  traceparent?: string;
};

export type CallContext = {
  /** The calling agent, as stamped by the room. */
  from: string;
  method: string;
  /** Room clock (ms) after which the caller stops waiting (messages: none). */
  deadline: number;
  /** Aborted when the caller times out, cancels or disconnects. */
  signal: AbortSignal;
  /** This call's (or message's) id: the causationId of what the handler publishes or calls. */
  callId?: string;
  /**
   * The caller's idempotency key, if it gave one. This client runs such a call once per
   * caller and key while it lives, and with `connect({ persist })` across restarts once the
   * outcome is stored; a handler with side effects outside crosstalk can use the key to make
   * them idempotent too (a crash while it runs can run it again).
   */
  idempotencyKey?: string;
  correlationId?: string;
  /** Reports progress to the caller (`onProgress`). No-op for messages. */
  progress(data: unknown): void;
  /** The call's or message's W3C trace context, as the caller sent it: the parent of a span for this handler. */
  traceparent?: string;
  /** The trace to pass on: `{ correlationId, causationId: callId }`. `ctx.publish`/`call`/`send` use it. */
  trace: Trace;
  /** `team.publish` stamped with this call's trace. */
  publish(type: string, data: unknown, options?: PublishOptions): Promise<PublishResult>;
  /** `team.call` stamped with this call's trace. */
  call<T = Json>(to: Target, method: string, input?: unknown, options?: CallOptions): Promise<T>;
  /** `team.send` stamped with this call's trace. */
  send(to: Target, method: string, input?: unknown, options?: SendOptions): Promise<SendResult>;
};

type BareContext = Omit<CallContext, "publish" | "call" | "send">;

export type Handler = (input: Json, ctx: CallContext) => unknown | Promise<unknown>;

export type CallOptions = Trace & {
  /** Bounds the whole call, retries and queueing while offline included. Default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Further attempts after a retryable failure (TARGET_GONE, OVERLOADED; OFFLINE and TIMEOUT see below). */
  retries?: number;
  /** Also retry after TIMEOUT (only safe with an idempotency key or an idempotent method). */
  retryOnTimeout?: boolean;
  /** Run at most once per key: a retry, or a resend after reconnecting, gets the original result. */
  idempotencyKey?: string;
  /**
   * Offline, wait for the link (bounded by `timeoutMs`) and go out on reconnect. Without it a
   * call made while the agent is offline fails at once with OFFLINE.
   */
  queue?: boolean;
  /**
   * End-to-end encryption of `input`: the id of the key to seal it with (see
   * `connect({ encryption })`), or false to send it in the clear. Default: the method's key in
   * `encryption.methods`, if any.
   */
  encrypt?: string | false;
  onProgress?: (data: Json) => void;
};

export type SendOptions = Trace & {
  /** Message id; resending the same id never delivers twice. Default: a fresh UUIDv7. */
  id?: string;
  /** How long the message waits in an offline recipient's inbox (default: the room's, 24 h). */
  ttlMs?: number;
  /** End-to-end encryption of `input`, as for calls (`CallOptions.encrypt`). */
  encrypt?: string | false;
};

/**
 * What `send` resolves with: the message id and the agents the room stored it for. An agent
 * with durable storage (`connect({ persist })`) that is offline resolves once the message is
 * in its local outbox: `pending: true`, no recipients yet, and `acked` resolving with the
 * room's answer when it has the message.
 */
export type SendResult = {
  id: string;
  recipients: string[];
  pending?: boolean;
  acked?: Promise<{ id: string; recipients: string[] }>;
};

type CallFrame = Extract<ClientFrame, { type: "rpc.call" }>;
type Attempt = {
  frame: CallFrame;
  sent: boolean;
  onProgress?: (data: Json) => void;
  settle: (error: CrosstalkError | null, output?: unknown) => void;
};
type OutgoingMessage = {
  frame: Extract<ClientFrame, { type: "rpc.send" }>;
  resolve: (r: SendResult) => void;
  reject: (e: CrosstalkError) => void;
  /** In the local outbox's storage (or needs none): may be sent. */
  durable: boolean;
  /** Set once the caller was answered `pending`: the room's answer goes here instead. */
  acked?: { resolve: (r: { id: string; recipients: string[] }) => void; reject: (e: CrosstalkError) => void };
};
type Incoming = Extract<RoomFrame, { type: "rpc.message" }>;
type Request = Extract<RoomFrame, { type: "rpc.request" }>;
type Outcome = { ok: true; output: Json } | { ok: false; error: ErrorBody };
/** An idempotent call this agent has run or is running: who waits for it, and its outcome once known. */
type Remembered = { outcome: Outcome | null; ids: Set<string>; at: number };

const DEFAULT_TIMEOUT_MS = 30_000;
/** The longest deadline a call may ask for (the `rpc.call` frame's limit). */
const MAX_TIMEOUT_MS = 3_600_000;
const SEEN_MESSAGES = 10_000;
/** How long, and how many, idempotent outcomes a callee remembers: the room's idempotency window. */
const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;
const REMEMBERED_CALLS = 10_000;

/** The room's NO_ROUTE for a target that left moments ago (probably reconnecting): worth a retry. */
const recentlyGone = (error: CrosstalkError): boolean =>
  error.code === "NO_ROUTE" &&
  typeof error.details === "object" &&
  error.details !== null &&
  (error.details as { recentlyGone?: unknown }).recentlyGone === true;

/** Whether a call that failed with `error` may be tried again (when it has `retries` left). */
const retryable = (error: CrosstalkError, options: CallOptions): boolean => {
  switch (error.code) {
    case "TARGET_GONE":
    case "OVERLOADED":
      return true;
    case "TIMEOUT":
      return options.retryOnTimeout === true;
    case "OFFLINE":
      return !!options.idempotencyKey;
    default:
      return recentlyGone(error);
  }
};

export class Rpc {
  readonly #handlers = new Map<string, Handler>();
  /** Payload keys (`connect({ encryption })`), the team and this agent, for sealed inputs; set by `team.ts`. */
  encryption: { team: string; agent: string; options: EncryptionOptions } | null = null;
  /** The durable outbox (`connect({ persist })`); set by `team.ts`. */
  persist: Persistence | null = null;
  /** What the served methods are (schemas, fire-and-forget), announced with them for A2A cards. */
  readonly #info = new Map<string, MethodInfo>();
  readonly #attempts = new Map<string, Attempt>();
  /** Handlers running now, by room call id; idempotent ones are not aborted when the link drops. */
  readonly #running = new Map<string, Running>();
  readonly #outbox = new Map<string, OutgoingMessage>();
  /** Messages whose method has no handler yet: kept (unacked) until one is registered. */
  readonly #parked: Incoming[] = [];
  /** Message ids already handled, so a redelivery does not run the handler again. */
  readonly #seen = new Set<string>();
  /**
   * Idempotent calls by caller and key (`<from>\n<key>`): a request seen again (the room
   * re-sends it after this agent's link dropped, or a caller retries it after a room restart)
   * is answered from here instead of running the handler twice.
   */
  readonly #remembered = new Map<string, Remembered>();
  /** Answers to idempotent calls that could not be sent (offline): sent when the link returns. */
  readonly #replies = new Map<string, Extract<ClientFrame, { type: "rpc.result" }>>();
  #maxInFlight: number | undefined;
  #nextRef = 0;
  #announceScheduled = false;

  constructor(
    private readonly transport: Transport,
    /** Binds `ctx.publish`/`call`/`send` to a trace; supplied by the team. */
    private readonly bind: (ctx: BareContext) => CallContext,
    private readonly onError: (error: unknown) => void,
  ) {}

  handle(method: string, handler: Handler, info?: MethodInfo): () => void {
    check(methodSchema, method, "method name");
    if (info !== undefined) check(methodInfoSchema, info, `method info for ${method}`);
    this.#handlers.set(method, handler);
    if (info) this.#info.set(method, info);
    else this.#info.delete(method);
    this.#announce();
    for (const message of this.#parked.filter((m) => m.method === method)) {
      this.#parked.splice(this.#parked.indexOf(message), 1);
      void this.#serveMessage(message);
    }
    return () => {
      if (this.#handlers.get(method) !== handler) return;
      this.#handlers.delete(method);
      this.#info.delete(method);
      this.#announce();
    };
  }

  /** Caps the calls the room routes here at once (beyond it: OVERLOADED). */
  setMaxInFlight(max: number): void {
    this.#maxInFlight = max;
    this.#announce();
  }

  /** Tells the room which methods we serve; coalesced per tick. */
  #announce(): void {
    if (this.#announceScheduled) return;
    this.#announceScheduled = true;
    queueMicrotask(() => {
      this.#announceScheduled = false;
      const frame: Extract<ClientFrame, { type: "rpc.handle" }> = {
        type: "rpc.handle",
        methods: [...this.#handlers.keys()],
      };
      if (this.#maxInFlight !== undefined) frame.maxInFlight = this.#maxInFlight;
      if (this.#info.size > 0) frame.info = Object.fromEntries(this.#info);
      this.transport.send(frame);
    });
  }

  /**
   * A plain call (no retries, nothing to seal) is its one attempt's promise, with no async
   * layer around it: the answer reaches the caller two microtask turns sooner. Bad arguments
   * reject, as they always did.
   */
  call(to: Target, method: string, input: unknown, options: CallOptions = {}): Promise<unknown> {
    let checked: CheckedCall;
    try {
      checked = this.#checkCall(to, method, input, options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (checked.kid || options.retries) return this.#callWithRetries(to, method, options, checked);
    return this.#attempt(this.#attemptOf(to, method, checked.json, options, checked));
  }

  /** What `call` checks before anything goes out; throws what the call rejects with. */
  #checkCall(to: Target, method: string, input: unknown, options: CallOptions): CheckedCall {
    const closed = this.transport.closedError;
    if (closed) throw closed;
    // A plain agent name and method pass their schemas' patterns without a zod parse per call.
    if (typeof to !== "string" || !NAME.test(to)) check(targetSchema, to, "target");
    if (typeof method !== "string" || !METHOD.test(method)) check(methodSchema, method, "method name");
    const json = toJson(input);
    if (json instanceof CrosstalkError) throw json;
    if (!this.transport.online && !options.queue)
      throw new CrosstalkError(
        "OFFLINE",
        `offline: ${JSON.stringify(to)}.${method} was not called (pass { queue: true } to wait for the link)`,
      );
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS)
      throw new CrosstalkError("INVALID_ARGUMENT", `timeoutMs must be a whole number from 1 to ${MAX_TIMEOUT_MS}`);
    if (options.retries !== undefined && !(Number.isInteger(options.retries) && options.retries >= 0))
      throw new CrosstalkError("INVALID_ARGUMENT", "retries must be a whole number, 0 or more");
    return {
      json,
      deadline: Date.now() + timeoutMs,
      callId: uuidv7(),
      kid: this.#keyFor(method, options.encrypt),
    };
  }

  /** A call whose input is sealed first, or that may be tried again after a retryable failure. */
  async #callWithRetries(to: Target, method: string, options: CallOptions, checked: CheckedCall): Promise<unknown> {
    const { json, deadline, callId, kid } = checked;
    const sent = kid ? await this.#seal(kid, { stream: CALL_INPUT, id: callId, type: method }, json) : json;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#attempt(this.#attemptOf(to, method, sent, options, checked));
      } catch (error) {
        const retry =
          error instanceof CrosstalkError &&
          retryable(error, options) &&
          attempt < (options.retries ?? 0) &&
          !options.signal?.aborted;
        const wait = backoff(attempt, { baseMs: 50, capMs: 5_000 });
        if (!retry || Date.now() + wait >= deadline) throw error;
        await sleep(wait);
      }
    }
  }

  /** One attempt of a call, with what is left of its deadline. */
  #attemptOf(to: Target, method: string, input: Json, options: CallOptions, { deadline, callId }: CheckedCall) {
    return {
      to,
      method,
      input,
      timeoutMs: Math.max(1, deadline - Date.now()),
      callId,
      correlationId: options.correlationId ?? callId,
      causationId: options.causationId,
      traceparent: options.traceparent,
      idempotencyKey: options.idempotencyKey,
      signal: options.signal,
      onProgress: options.onProgress,
    };
  }

  #attempt(a: {
    to: Target;
    method: string;
    input: Json;
    timeoutMs: number;
    callId: string;
    correlationId: string;
    causationId?: string;
    traceparent?: string | undefined;
    idempotencyKey?: string;
    signal?: AbortSignal;
    onProgress?: (data: Json) => void;
  }): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (a.signal?.aborted) return reject(new CrosstalkError("CANCELLED", "the caller aborted the call"));
      const ref = `r${++this.#nextRef}`;
      // Functions made per call are made only when needed, and without a name of their own
      // (a named one is wrapped again by tools that keep names, such as tsx).
      let onAbort: (() => void) | undefined;
      if (a.signal) {
        onAbort = () => this.#giveUp(ref, new CrosstalkError("CANCELLED", "the caller aborted the call"));
        a.signal.addEventListener("abort", onAbort, { once: true });
      }
      const timer = setTimeout(
        () =>
          this.#giveUp(
            ref,
            new CrosstalkError(
              "TIMEOUT",
              `no answer from ${JSON.stringify(a.to)}.${a.method} within ${a.timeoutMs} ms`,
            ),
          ),
        a.timeoutMs,
      );
      const frame: CallFrame = {
        type: "rpc.call",
        ref,
        to: a.to,
        method: a.method,
        input: a.input,
        timeoutMs: a.timeoutMs,
        callId: a.callId,
        correlationId: a.correlationId,
        traceparent: a.traceparent ?? traceparentFor(a.correlationId),
      };
      if (a.causationId) frame.causationId = a.causationId;
      if (a.idempotencyKey) frame.idempotencyKey = a.idempotencyKey;
      const attempts = this.#attempts;
      const attempt: Attempt = {
        frame,
        sent: false,
        onProgress: a.onProgress,
        settle(error, output) {
          clearTimeout(timer);
          if (onAbort) a.signal?.removeEventListener("abort", onAbort);
          attempts.delete(ref);
          if (error) reject(error);
          else resolve(output);
        },
      };
      this.#attempts.set(ref, attempt);
      attempt.sent = this.transport.send(frame);
    });
  }

  #giveUp(ref: string, error: CrosstalkError): void {
    const attempt = this.#attempts.get(ref);
    if (!attempt) return;
    if (attempt.sent)
      this.transport.send({ type: "rpc.cancel", ref, reason: error.code === "TIMEOUT" ? "TIMEOUT" : "CANCELLED" });
    attempt.settle(error);
  }

  /** Fire-and-forget: resolves once the room has stored the message for its recipients. */
  send(to: Target, method: string, input: unknown, options: SendOptions = {}): Promise<SendResult> {
    const kid = this.#keyFor(method, options.encrypt);
    if (kid) {
      // Sealed for this message id, then sent as is.
      const id = options.id ?? uuidv7();
      const json = toJson(input);
      if (json instanceof CrosstalkError) return Promise.reject(json);
      return this.#seal(kid, { stream: MESSAGE_INPUT, id, type: method }, json).then((sealed) =>
        this.send(to, method, sealed, { ...options, id, encrypt: false }),
      );
    }
    return new Promise((resolve, reject) => {
      const closed = this.transport.closedError;
      if (closed) return reject(closed);
      check(targetSchema, to, "target"); // A bad argument throws here, which rejects the promise.
      check(methodSchema, method, "method name");
      const json = toJson(input);
      if (json instanceof CrosstalkError) return reject(json);
      const id = options.id ?? uuidv7();
      const frame: OutgoingMessage["frame"] = {
        type: "rpc.send",
        ref: `s${++this.#nextRef}`,
        id,
        to,
        method,
        input: json,
        callId: id,
        correlationId: options.correlationId ?? id,
        traceparent: options.traceparent ?? traceparentFor(options.correlationId ?? id),
      };
      if (options.ttlMs !== undefined) frame.ttlMs = options.ttlMs;
      if (options.causationId) frame.causationId = options.causationId;
      const out: OutgoingMessage = { frame, resolve, reject, durable: !this.persist };
      if (!this.persist) {
        this.#outbox.set(frame.ref, out);
        this.transport.send(frame);
        return;
      }
      // Written to the local outbox first (which renames it `o<n>`), sent once durable.
      this.persist.enqueue(
        frame,
        this.#outbox,
        out,
        () => {
          if (!this.transport.send(frame)) this.#answerPending(out);
        },
        reject,
      );
    });
  }

  /** The caller of a durable message the room has not answered yet gets `pending` and an `acked` promise. */
  #answerPending(out: OutgoingMessage): void {
    if (out.acked) return;
    const acked = new Promise<{ id: string; recipients: string[] }>((resolve, reject) => {
      out.acked = { resolve, reject };
    });
    acked.catch(() => {});
    out.resolve({ id: out.frame.id, recipients: [], pending: true, acked });
  }

  /**
   * Outcomes of idempotent calls a previous run answered (`connect({ persist })`): a request
   * with one of those keys is answered from here, not run again. Past the window: forgotten.
   */
  restoreOutcomes(outcomes: StoredOutcome[]): void {
    const now = Date.now();
    const expired: { from: string; key: string }[] = [];
    for (const o of outcomes) {
      if (now - o.at >= IDEMPOTENCY_WINDOW_MS) expired.push(o);
      else this.#remembered.set(`${o.from}\n${o.key}`, { outcome: o.outcome as Outcome, ids: new Set(), at: o.at });
    }
    this.persist?.forgetOutcomes(expired);
  }

  /** Messages a previous run left in the durable outbox: sent (again) on the next connect. */
  restore(entries: StoredEntry[]): void {
    for (const { frame } of entries) {
      if (frame.type !== "rpc.send") continue;
      this.#outbox.set(frame.ref, { frame, resolve: () => {}, reject: () => {}, durable: true });
    }
  }

  /** Messages not yet stored by the room, for `team.pending`. */
  get pendingSends(): number {
    return this.#outbox.size;
  }

  /** Calls waiting for the link (`{ queue: true }` offline, or idempotent ones to resend), for `team.pending`. */
  get queuedCalls(): number {
    let n = 0;
    for (const a of this.#attempts.values()) if (!a.sent) n++;
    return n;
  }

  /**
   * After (re)connecting: announce methods, send answers that waited, resend idempotent calls
   * and unconfirmed sends.
   */
  online(): void {
    this.#announce();
    for (const [id, frame] of this.#replies) if (this.transport.send(frame)) this.#replies.delete(id);
    for (const a of this.#attempts.values()) if (!a.sent) a.sent = this.transport.send(a.frame);
    for (const m of this.#outbox.values()) if (m.durable) this.transport.send(m.frame);
  }

  /**
   * The socket dropped. A plain call already sent has an unknown outcome: OFFLINE. An
   * idempotent one is sent again on reconnect and answered from the room's record. Handlers
   * of plain calls are aborted (the room has failed those calls); handlers of idempotent
   * ones run on, and their answers wait for the link.
   */
  offline(): void {
    for (const m of this.#outbox.values()) if (m.durable && m.frame.outbox) this.#answerPending(m);
    for (const a of [...this.#attempts.values()]) {
      if (!a.sent) continue;
      if (a.frame.idempotencyKey) a.sent = false;
      else
        a.settle(
          new CrosstalkError(
            "OFFLINE",
            `connection lost while calling ${JSON.stringify(a.frame.to)}.${a.frame.method}`,
          ),
        );
    }
    for (const [id, running] of this.#running) {
      if (running.idempotent) continue;
      running.abort(new CrosstalkError("OFFLINE", "connection lost"));
      this.#running.delete(id);
    }
  }

  failAll(error: CrosstalkError): void {
    for (const a of [...this.#attempts.values()]) a.settle(error);
    for (const m of this.#outbox.values()) (m.acked ?? m).reject(error);
    this.#outbox.clear();
    for (const running of this.#running.values()) running.abort(error);
    this.#running.clear();
    this.#replies.clear();
  }

  /** The room refused send `ref`. */
  refused(ref: string, error: CrosstalkError): boolean {
    const m = this.#outbox.get(ref);
    if (!m) return false;
    this.#outbox.delete(ref);
    this.persist?.remove(ref);
    (m.acked ?? m).reject(error);
    return true;
  }

  receive(frame: Extract<RoomFrame, { type: `rpc.${string}` }>): void {
    switch (frame.type) {
      case "rpc.response": {
        const attempt = this.#attempts.get(frame.ref);
        if (!attempt) return;
        if (frame.ok) attempt.settle(null, frame.output);
        else attempt.settle(CrosstalkError.from(frame.error));
        return;
      }
      case "rpc.progress":
        this.#attempts.get(frame.ref)?.onProgress?.(frame.data);
        return;
      case "rpc.abort":
        this.#running.get(frame.id)?.abort(new CrosstalkError(frame.reason, `call aborted: ${frame.reason}`));
        this.#running.delete(frame.id);
        return;
      case "rpc.request":
        void this.#serveCall(frame);
        return;
      case "rpc.message":
        void this.#serveMessage(frame);
        return;
      case "rpc.sent": {
        const m = this.#outbox.get(frame.ref);
        if (!m) return;
        this.#outbox.delete(frame.ref);
        this.persist?.remove(frame.ref);
        (m.acked ?? m).resolve({ id: m.frame.id, recipients: frame.recipients });
        return;
      }
    }
  }

  #context(
    frame: { from: string; method: string; callId?: string; correlationId?: string; traceparent?: string },
    deadline: number,
    running: Running,
    progress: (data: unknown) => void,
  ): CallContext {
    const trace: Trace = {};
    const correlationId = frame.correlationId ?? frame.callId;
    if (correlationId) trace.correlationId = correlationId;
    if (frame.callId) trace.causationId = frame.callId;
    const ctx: BareContext = {
      from: frame.from,
      method: frame.method,
      deadline,
      // Made when the handler first reads it (most never do): see `Running`.
      get signal() {
        return running.signal;
      },
      callId: frame.callId,
      correlationId,
      progress,
      trace,
    };
    if (frame.traceparent) ctx.traceparent = frame.traceparent;
    return this.bind(ctx);
  }

  /** The key id to seal a call's or message's input to `method` with, if any. */
  #keyFor(method: string, encrypt: string | false | undefined): string | null {
    return keyIdFor(encrypt, this.encryption?.options.methods, method);
  }

  #seal(kid: string, ctx: { stream: string; id: string; type: string }, input: Json): Promise<Json> {
    if (!this.encryption)
      return Promise.reject(new CrosstalkError("INVALID_ARGUMENT", "no payload keys: connect({ encryption })"));
    const { team, agent, options } = this.encryption;
    return seal(options.keys, kid, { team, ...ctx, from: agent }, input) as Promise<Json>;
  }

  /** A call's or message's input, opened if sealed (DECRYPT_FAILED without the key or when misbound). */
  async #open(kind: string, id: string, frame: { method: string; from: string }, input: Json): Promise<Json> {
    if (!isSealed(input)) return input;
    if (!this.encryption)
      throw new CrosstalkError(
        "DECRYPT_FAILED",
        `the input of ${frame.method} is sealed and this agent has no payload keys`,
      );
    const ctx = { team: this.encryption.team, stream: kind, id, type: frame.method, from: frame.from };
    return (await open(this.encryption.options.keys, ctx, input)) as Json;
  }

  async #serveCall(frame: Request): Promise<void> {
    const key = frame.idempotencyKey === undefined ? null : `${frame.from}\n${frame.idempotencyKey}`;
    if (key !== null) {
      const known = this.#remembered.get(key);
      if (known?.outcome) return this.#reply(frame.id, known.outcome, true);
      // Still running here (the room re-sent it after our link dropped): answered when done.
      if (known) return void known.ids.add(frame.id);
    }
    const handler = this.#handlers.get(frame.method);
    if (!handler)
      return this.#reply(
        frame.id,
        { ok: false, error: { code: "NO_ROUTE", message: `this agent does not serve ${frame.method}` } },
        false,
      );
    const remembered = key === null ? null : this.#remember(key, frame.id);
    const running = new Running(remembered !== null);
    this.#running.set(frame.id, running);
    const ctx = this.#context(frame, frame.deadline, running, (data: unknown) => {
      const json = toJson(data);
      if (!(json instanceof CrosstalkError) && !running.aborted)
        this.transport.send({ type: "rpc.progress", id: frame.id, data: json });
    });
    if (frame.idempotencyKey !== undefined) ctx.idempotencyKey = frame.idempotencyKey;
    let outcome: Outcome;
    try {
      // An input in the clear needs no await (most calls): the handler runs in this tick.
      const input = isSealed(frame.input)
        ? await this.#open(CALL_INPUT, frame.callId ?? frame.id, frame, frame.input)
        : frame.input;
      const result = handler(input, ctx);
      // A plain value is answered in this tick: awaiting it would queue the answer behind
      // every microtask already waiting.
      const json = toJson(isThenable(result) ? await result : result);
      outcome =
        json instanceof CrosstalkError
          ? { ok: false, error: { code: "INVALID_OUTPUT", message: json.message } }
          : { ok: true, output: json };
    } catch (error) {
      outcome = { ok: false, error: toErrorBody(error) };
    } finally {
      this.#running.delete(frame.id);
    }
    if (!remembered) {
      // An aborted plain call has no one waiting for it.
      if (!running.aborted) this.#reply(frame.id, outcome, false);
      return;
    }
    remembered.outcome = outcome;
    remembered.at = Date.now();
    if (this.persist && key !== null) {
      // Durable before anyone hears it: a callee restarted on its storage answers the key
      // again rather than running the handler twice. A failed write costs only that memory.
      const from = frame.from;
      const idempotencyKey = frame.idempotencyKey as string;
      await this.persist
        .storeOutcome({ from, key: idempotencyKey, outcome, at: remembered.at })
        .catch((error: unknown) => this.onError(error));
    }
    for (const id of remembered.ids) this.#reply(id, outcome, true);
    remembered.ids.clear();
  }

  /**
   * Sends a callee's answer. An idempotent call's answer that cannot go now (`keep`) waits
   * for the link; a plain call's is dropped, since the room has already failed that call.
   */
  #reply(id: string, outcome: Outcome, keep: boolean): void {
    const frame = { type: "rpc.result", id, ...outcome } as const;
    if (!this.transport.send(frame) && keep) this.#replies.set(id, frame);
  }

  /** Starts remembering idempotent call `key`, forgetting outcomes past the window or the cap. */
  #remember(key: string, id: string): Remembered {
    const now = Date.now();
    const forgotten: { from: string; key: string }[] = [];
    for (const [k, r] of this.#remembered) {
      if (this.#remembered.size < REMEMBERED_CALLS && now - r.at < IDEMPOTENCY_WINDOW_MS) break;
      if (r.outcome) {
        this.#remembered.delete(k);
        const cut = k.indexOf("\n");
        forgotten.push({ from: k.slice(0, cut), key: k.slice(cut + 1) });
      }
    }
    this.persist?.forgetOutcomes(forgotten);
    const remembered: Remembered = { outcome: null, ids: new Set([id]), at: now };
    this.#remembered.set(key, remembered);
    return remembered;
  }

  async #serveMessage(frame: Incoming): Promise<void> {
    if (this.#seen.has(frame.id)) {
      this.transport.send({ type: "rpc.message.ack", id: frame.id });
      return;
    }
    const handler = this.#handlers.get(frame.method);
    if (!handler) {
      if (!this.#parked.some((m) => m.id === frame.id)) this.#parked.push(frame);
      return;
    }
    this.#seen.add(frame.id);
    if (this.#seen.size > SEEN_MESSAGES) this.#seen.delete(this.#seen.values().next().value as string);
    try {
      await handler(
        await this.#open(MESSAGE_INPUT, frame.id, frame, frame.input),
        this.#context(frame, Number.POSITIVE_INFINITY, new Running(false), () => {}),
      );
    } catch (error) {
      // Delivered is delivered: the failure is the handler's to report, not a reason to redeliver.
      this.onError(error);
    }
    this.transport.send({ type: "rpc.message.ack", id: frame.id });
  }
}

/**
 * A handler running here: whether it was aborted (the caller timed out or cancelled, the link
 * dropped) and its `ctx.signal`. The AbortController behind the signal is made only when the
 * handler reads the signal, already aborted with the same reason if the abort came first:
 * in Node an AbortController costs more than the rest of serving a small call.
 */
class Running {
  #controller: AbortController | null = null;
  #reason: unknown = undefined;
  aborted = false;

  /** Idempotent calls are not aborted when the link drops (`offline`). */
  constructor(readonly idempotent: boolean) {}

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** A call's input as JSON, its deadline, its id and the key that seals it, if any (`Rpc.call`). */
type CheckedCall = { json: Json; deadline: number; callId: string; kid: string | null };

/** Whether a handler's result must be awaited (a promise, or anything with a `then` method). */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

/** What a callee sends back for a thrown value: a table code it chose, else HANDLER_ERROR; never a stack. */
function toErrorBody(error: unknown): ErrorBody {
  if (error instanceof CrosstalkError && Object.hasOwn(ERROR_CODES, error.code)) return error.toBody();
  const message = error instanceof Error ? error.message : String(error);
  return { code: "HANDLER_ERROR", message: message.slice(0, 2000) };
}
