/**
 * Direct messages, client side: serving methods and calling other agents through the room.
 * Not re-exported from the package entry point; `team.ts` owns it.
 */
import { CrosstalkError } from "./errors.ts";
import { ERROR_CODES, type ErrorBody, MAX_FRAME_BYTES, methodSchema, nameSchema, type RoomFrame } from "./protocol.ts";
import type { Json } from "./state.ts";
import type { Transport } from "./transport.ts";

export type CallContext = {
  /** The calling agent, as stamped by the room. */
  from: string;
  method: string;
  /** Room clock (ms) after which the caller stops waiting. */
  deadline: number;
  /** Aborted when the caller times out, cancels or disconnects. */
  signal: AbortSignal;
};

export type Handler = (input: Json, ctx: CallContext) => unknown | Promise<unknown>;

export type CallOptions = {
  /** Bounds the whole call, queueing while offline included. Default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
};

type Outgoing = {
  frame: Extract<import("./protocol.ts").ClientFrame, { type: "rpc.call" }>;
  sent: boolean;
  settle: (error: CrosstalkError | null, output?: unknown) => void;
};

const DEFAULT_TIMEOUT_MS = 30_000;

export class Rpc {
  readonly #handlers = new Map<string, Handler>();
  readonly #calls = new Map<string, Outgoing>();
  readonly #running = new Map<string, AbortController>();
  #nextRef = 0;
  #announceScheduled = false;

  constructor(private readonly transport: Transport) {}

  handle(method: string, handler: Handler): () => void {
    if (!methodSchema.safeParse(method).success)
      throw new CrosstalkError("INVALID_ARGUMENT", `invalid method name ${JSON.stringify(method)}`);
    this.#handlers.set(method, handler);
    this.#announce();
    return () => {
      if (this.#handlers.get(method) !== handler) return;
      this.#handlers.delete(method);
      this.#announce();
    };
  }

  /** Tells the room which methods we serve; coalesced per tick. */
  #announce(): void {
    if (this.#announceScheduled) return;
    this.#announceScheduled = true;
    queueMicrotask(() => {
      this.#announceScheduled = false;
      this.transport.send({ type: "rpc.handle", methods: [...this.#handlers.keys()] });
    });
  }

  call(to: string, method: string, input: unknown, options: CallOptions = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (!nameSchema.safeParse(to).success)
        return reject(new CrosstalkError("INVALID_ARGUMENT", `invalid agent id ${JSON.stringify(to)}`));
      if (!methodSchema.safeParse(method).success)
        return reject(new CrosstalkError("INVALID_ARGUMENT", `invalid method name ${JSON.stringify(method)}`));
      if (options.signal?.aborted) return reject(new CrosstalkError("CANCELLED", "aborted before the call was made"));
      const json = toJson(input);
      if (json instanceof CrosstalkError) return reject(json);
      const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const ref = `r${++this.#nextRef}`;
      const onAbort = () => this.#giveUp(ref, new CrosstalkError("CANCELLED", "the caller aborted the call"));
      const timer = setTimeout(
        () => this.#giveUp(ref, new CrosstalkError("TIMEOUT", `no answer from ${to}.${method} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const call: Outgoing = {
        frame: { type: "rpc.call", ref, to, method, input: json, timeoutMs },
        sent: false,
        settle: (error, output) => {
          clearTimeout(timer);
          options.signal?.removeEventListener("abort", onAbort);
          this.#calls.delete(ref);
          if (error) reject(error);
          else resolve(output);
        },
      };
      options.signal?.addEventListener("abort", onAbort, { once: true });
      this.#calls.set(ref, call);
      call.sent = this.transport.send(call.frame);
    });
  }

  #giveUp(ref: string, error: CrosstalkError): void {
    const call = this.#calls.get(ref);
    if (!call) return;
    if (call.sent) this.transport.send({ type: "rpc.cancel", ref });
    call.settle(error);
  }

  /** After (re)connecting: announce methods again and send calls queued while offline. */
  online(): void {
    this.#announce();
    for (const call of this.#calls.values()) if (!call.sent) call.sent = this.transport.send(call.frame);
  }

  /** The socket dropped: calls already sent have an unknown outcome; handlers are aborted. */
  offline(): void {
    for (const call of [...this.#calls.values()]) {
      if (call.sent)
        call.settle(
          new CrosstalkError("OFFLINE", `connection lost while calling ${call.frame.to}.${call.frame.method}`),
        );
    }
    for (const controller of this.#running.values()) controller.abort(new CrosstalkError("OFFLINE", "connection lost"));
    this.#running.clear();
  }

  failAll(error: CrosstalkError): void {
    for (const call of [...this.#calls.values()]) call.settle(error);
    for (const controller of this.#running.values()) controller.abort(error);
    this.#running.clear();
  }

  receive(frame: Extract<RoomFrame, { type: "rpc.request" | "rpc.abort" | "rpc.response" }>): void {
    switch (frame.type) {
      case "rpc.response": {
        const call = this.#calls.get(frame.ref);
        if (!call) return;
        if (frame.ok) call.settle(null, frame.output);
        else call.settle(CrosstalkError.from(frame.error));
        return;
      }
      case "rpc.abort":
        this.#running.get(frame.id)?.abort(new CrosstalkError(frame.reason, `call aborted: ${frame.reason}`));
        this.#running.delete(frame.id);
        return;
      case "rpc.request":
        void this.#serve(frame);
        return;
    }
  }

  async #serve(frame: Extract<RoomFrame, { type: "rpc.request" }>): Promise<void> {
    const handler = this.#handlers.get(frame.method);
    const reply = (result: { ok: true; output: Json } | { ok: false; error: ErrorBody }) =>
      this.transport.send({ type: "rpc.result", id: frame.id, ...result });
    if (!handler)
      return void reply({
        ok: false,
        error: { code: "NO_ROUTE", message: `this agent does not serve ${frame.method}` },
      });
    const controller = new AbortController();
    this.#running.set(frame.id, controller);
    try {
      const output = await handler(frame.input, {
        from: frame.from,
        method: frame.method,
        deadline: frame.deadline,
        signal: controller.signal,
      });
      if (controller.signal.aborted) return;
      const json = toJson(output);
      if (json instanceof CrosstalkError)
        reply({ ok: false, error: { code: "INVALID_OUTPUT", message: json.message } });
      else reply({ ok: true, output: json });
    } catch (error) {
      if (controller.signal.aborted) return;
      reply({ ok: false, error: toErrorBody(error) });
    } finally {
      this.#running.delete(frame.id);
    }
  }
}

/** What a callee sends back for a thrown value: a table code it chose, else HANDLER_ERROR; never a stack. */
function toErrorBody(error: unknown): ErrorBody {
  if (error instanceof CrosstalkError && Object.hasOwn(ERROR_CODES, error.code)) return error.toBody();
  const message = error instanceof Error ? error.message : String(error);
  return { code: "HANDLER_ERROR", message: message.slice(0, 2000) };
}

/** A JSON copy of `value` (undefined becomes null), or why it cannot travel. */
function toJson(value: unknown): Json | CrosstalkError {
  let text: string;
  try {
    text = JSON.stringify(value ?? null);
  } catch (error) {
    return new CrosstalkError("INVALID_ARGUMENT", `value is not JSON: ${(error as Error).message}`);
  }
  if (text.length > MAX_FRAME_BYTES - 4096)
    return new CrosstalkError("TOO_LARGE", `value is ${text.length} bytes; a message carries at most about 1 MB`);
  return JSON.parse(text) as Json;
}
