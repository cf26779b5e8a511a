/**
 * Direct messages: the room routes `rpc.call` from a caller to the callee's live session,
 * relays the answer back, and fails calls promptly when either side goes away or the
 * deadline passes. In-flight calls live in memory only: a room restart drops every socket,
 * and callers see OFFLINE for calls that were in flight.
 */
import type { ClientFrame, ErrorBody, ErrorCode } from "../client/protocol.ts";
import type { Presence } from "./presence.ts";
import type { Session } from "./session.ts";

type CallFrame = Extract<ClientFrame, { type: "rpc.call" }>;
type ResultFrame = Extract<ClientFrame, { type: "rpc.result" }>;

type InFlight = {
  id: string;
  caller: Session;
  ref: string;
  callee: Session;
  timer: ReturnType<typeof setTimeout>;
};

export class Router {
  #next = 0;
  /** Room call id → call. */
  readonly #calls = new Map<string, InFlight>();
  /** `${caller.n}:${ref}` → room call id, for cancels. */
  readonly #byRef = new Map<string, string>();

  constructor(
    private readonly presence: Presence,
    private readonly now: () => number,
  ) {}

  get inFlight(): number {
    return this.#calls.size;
  }

  call(caller: Session, frame: CallFrame): void {
    const fail = (error: ErrorBody) => caller.sendFrame({ type: "rpc.response", ref: frame.ref, ok: false, error });
    const callee = this.presence.get(frame.to);
    if (!callee) return fail({ code: "NO_ROUTE", message: `agent ${frame.to} is not connected` });
    if (!callee.methods.includes(frame.method)) {
      return fail({ code: "NO_ROUTE", message: `agent ${frame.to} does not serve ${frame.method}` });
    }
    const refKey = `${caller.n}:${frame.ref}`;
    if (this.#byRef.has(refKey))
      return fail({ code: "CONFLICT", message: `call ref ${frame.ref} is already in flight` });
    const id = `c${++this.#next}`;
    const deadline = this.now() + frame.timeoutMs;
    const timer = setTimeout(
      () => this.#finish(id, { code: "TIMEOUT", message: `no answer within ${frame.timeoutMs} ms` }, "TIMEOUT"),
      frame.timeoutMs,
    );
    this.#calls.set(id, { id, caller, ref: frame.ref, callee, timer });
    this.#byRef.set(refKey, id);
    callee.sendFrame({
      type: "rpc.request",
      id,
      from: caller.agent,
      method: frame.method,
      input: frame.input,
      deadline,
    });
  }

  result(callee: Session, frame: ResultFrame): ErrorBody | null {
    const call = this.#calls.get(frame.id);
    // A late answer (after timeout or cancel) is dropped quietly: the caller has moved on.
    if (!call) return null;
    if (call.callee !== callee)
      return { code: "FORBIDDEN", message: `call ${frame.id} was not sent to this connection` };
    this.#drop(call);
    if (frame.ok) call.caller.sendFrame({ type: "rpc.response", ref: call.ref, ok: true, output: frame.output });
    else call.caller.sendFrame({ type: "rpc.response", ref: call.ref, ok: false, error: frame.error });
    return null;
  }

  cancel(caller: Session, ref: string): void {
    const id = this.#byRef.get(`${caller.n}:${ref}`);
    if (id) this.#finish(id, null, "CANCELLED");
  }

  /** Fails or aborts every call that involves `session`. */
  gone(session: Session): void {
    for (const call of [...this.#calls.values()]) {
      if (call.callee === session) {
        this.#finish(
          call.id,
          { code: "TARGET_GONE", message: `agent ${session.agent} disconnected before answering` },
          null,
        );
      } else if (call.caller === session) {
        this.#finish(call.id, null, "OFFLINE");
      }
    }
  }

  /** Ends a call: answers the caller with `error` (if any) and aborts the callee (if `abort`). */
  #finish(id: string, error: ErrorBody | null, abort: ErrorCode | null): void {
    const call = this.#calls.get(id);
    if (!call) return;
    this.#drop(call);
    if (error) call.caller.sendFrame({ type: "rpc.response", ref: call.ref, ok: false, error });
    if (abort) call.callee.sendFrame({ type: "rpc.abort", id, reason: abort });
  }

  #drop(call: InFlight): void {
    clearTimeout(call.timer);
    this.#calls.delete(call.id);
    this.#byRef.delete(`${call.caller.n}:${call.ref}`);
  }
}
