/**
 * Socket dispatch: the single point every message from a socket goes through. It parses,
 * asks `policy.ts` whether the sender may, hands the frame to the handler its type names in
 * the dispatch table, and turns what the handler returns into frames: the reply frame the
 * protocol names for the request, or an `error` frame echoing the request's `ref`. No module
 * sends its own reply or refusal.
 *
 * Messages of one session are handled strictly in arrival order (a frame waiting on a
 * document load holds the next); a handler's `later` answer does not hold them. A text
 * frame arriving while nothing of its session is unfinished is handled at once, without a
 * promise (a call and its answer are most of the room's frames); only a handler that has
 * to wait (storage, a document) makes the next frames queue behind it.
 */
import * as decoding from "lib0/decoding";
import * as syncProtocol from "y-protocols/sync";
import {
  CLOSE_CODES,
  type ClientFrame,
  type ClientFrameType,
  decodeDocFrame,
  type ErrorBody,
  isBatch,
  type Parsed,
  parseClientBatch,
  parseClientFrame,
  type RequestType,
  replies,
  Y_MESSAGE_AWARENESS,
  Y_MESSAGE_SYNC,
} from "../protocol/index.ts";
import type { Admission } from "./admission.ts";
import { type DocHub, isEmptyUpdate, type Refusal } from "./docs.ts";
import type { Guard } from "./guard.ts";
import type { DispatchTable, FrameHandler, Outcome } from "./handlers.ts";
import type { Metrics } from "./metrics.ts";
import { authorize, type Op } from "./policy.ts";
import { RawDocSession, type Session } from "./session.ts";

type Data = string | ArrayBuffer | ArrayBufferView;

export type DispatchOptions = {
  team: string;
  table: DispatchTable;
  hub: DocHub;
  metrics: Metrics;
  admission: Admission;
  /** Per-connection limits and error budgets. */
  guard: Guard;
  /** Null once the team's policy is loaded; until then, the load every message waits for. */
  policyReady: () => Promise<void> | null;
  /** Every refusal (the room audits the security-relevant ones). */
  refused?: (session: Session, error: ErrorBody) => void;
  /**
   * After each message of a session is handled (a `later` answer not awaited), before its
   * next: `type` is the frame's type, "doc" for a binary frame, null for one not understood.
   */
  handled?: (session: Session, type: ClientFrameType | "doc" | null) => void;
};

export class Dispatch {
  /** The session whose frame is being handled now: a host delivering re-entrantly queues the next one behind it. */
  #inside: Session | null = null;

  constructor(private readonly options: DispatchOptions) {}

  /** Handles or queues one message of `session`; failures become INTERNAL errors, never a thrown callback. */
  message(session: Session, data: Data): void {
    if (session.idle && this.#inside !== session && typeof data === "string" && this.options.policyReady() === null) {
      const outer = this.#inside;
      this.#inside = session;
      let waiting: Promise<void> | void;
      try {
        waiting = this.#textNow(session, data);
      } catch (error) {
        return this.#failed(session, error, undefined);
      } finally {
        this.#inside = outer;
      }
      if (waiting) session.hold(waiting.catch((error: unknown) => this.#failed(session, error, undefined)));
      return;
    }
    session.enqueue(() =>
      this.#handle(session, data).catch((error: unknown) => this.#failed(session, error, undefined)),
    );
  }

  #failed(session: Session, error: unknown, ref: string | undefined): void {
    console.error(`[crosstalk ${this.options.team}] frame from ${session.agent} failed`, error);
    this.#refuse(session, { code: "INTERNAL", message: "the room failed to handle this frame" }, { ref });
  }

  /**
   * Reports a refusal to the session; a session that spent its error budget is closed with
   * `TooManyErrors`, one that sent an update the room cannot apply with `BadUpdate`.
   */
  #refuse(
    session: Session,
    error: ErrorBody,
    extra: { ref?: string; doc?: string; close?: boolean; silent?: boolean } = {},
  ): void {
    const { close, silent, ...where } = extra;
    this.options.metrics.refused.inc({ code: error.code });
    this.options.refused?.(session, error);
    if (!silent) session.sendFrame({ type: "error", ...where, error });
    if (session.closed) return;
    if (close) this.options.admission.drop(session, CLOSE_CODES.BadUpdate);
    else if (this.options.guard.refused(session, error.code))
      this.options.admission.drop(session, CLOSE_CODES.TooManyErrors);
  }

  async #handle(session: Session, data: Data): Promise<void> {
    const loading = this.options.policyReady();
    if (loading) await loading;
    if (typeof data === "string") return this.#textNow(session, data);
    if (session.closed) return;
    const tooLarge = this.options.guard.size(data.byteLength);
    if (tooLarge) return this.#refuse(session, tooLarge);
    if (session instanceof RawDocSession) await this.#raw(session, data);
    else await this.#binary(session, data);
    this.options.handled?.(session, "doc");
  }

  /** A text message, now: a promise only while its handler waits. */
  #textNow(session: Session, text: string): Promise<void> | void {
    if (session.closed) return;
    const tooLarge = this.options.guard.size(text.length);
    if (tooLarge) return this.#refuse(session, tooLarge);
    // A stock Yjs client speaks binary only.
    if (session instanceof RawDocSession) return;
    if (isBatch(text)) return this.#batchNow(session, parseClientBatch(text), 0, text.length);
    return this.#parsedNow(session, parseClientFrame(text), text.length);
  }

  /**
   * A batch's frames from `from` on, each as if it had come alone: one that has to wait
   * holds the rest behind it. `chars` is the whole message's length (a bound on each frame's).
   */
  #batchNow(session: Session, items: Parsed<ClientFrame>[], from: number, chars: number): Promise<void> | void {
    for (let i = from; i < items.length; i++) {
      if (session.closed) return;
      const waiting = this.#parsedNow(session, items[i] as Parsed<ClientFrame>, chars);
      if (waiting) return waiting.then(() => this.#batchNow(session, items, i + 1, chars));
    }
  }

  #parsedNow(session: Session, parsed: Parsed<ClientFrame>, chars: number): Promise<void> | void {
    this.options.metrics.framesIn.incOne("type", parsed.ok ? parsed.frame.type : "invalid");
    if (!parsed.ok) {
      this.#refuse(session, parsed.error, { ref: parsed.ref });
      return this.options.handled?.(session, null);
    }
    const frame = parsed.frame;
    const waiting = this.#text(session, frame, chars);
    if (!waiting) return this.options.handled?.(session, frame.type);
    return waiting.then(() => this.options.handled?.(session, frame.type));
  }

  async #binary(session: Session, data: ArrayBuffer | ArrayBufferView): Promise<void> {
    const whole = session.reassembler.push(asBytes(data));
    if (!whole.ok) return this.#refuse(session, whole.error);
    if (!whole.frame) return;
    this.options.metrics.framesIn.inc({ type: "doc" });
    const decoded = decodeDocFrame(whole.frame);
    if (!decoded.ok) return this.#refuse(session, decoded.error);
    const { doc, decoder } = decoded.frame;
    const op = syncOp(decoder);
    const denied = op && authorize(session, op, { doc });
    if (denied && !emptyWrite(op, decoder)) return this.#refuse(session, denied, { doc });
    const refusal = await this.options.hub.receive(session, doc, decoder);
    if (refusal) this.#refuse(session, refusal.error, { doc, ...(refusal.close ? { close: true } : {}) });
  }

  /** A parsed frame: authorized, admitted, handled and answered; a promise only while its handler waits. */
  #text(session: Session, frame: ClientFrame, chars: number): Promise<void> | void {
    const ref = "ref" in frame ? frame.ref : undefined;
    const denied = authorize(session, "send", { frame });
    if (denied) return this.#refuse(session, denied, { ref });
    const over = this.options.guard.admit(session, frame);
    if (over && frame.type === "rpc.call") {
      // A caller waits for the call's own answer frame.
      session.sendFrame({ type: "rpc.response", ref: frame.ref, ok: false, error: over });
      return this.#refuse(session, over, { silent: true });
    }
    if (over) return this.#refuse(session, over, { ref });
    // The table holds the handler of this frame's own type (`DispatchTable`).
    const handler = this.options.table[frame.type] as FrameHandler<ClientFrameType>;
    let outcome: ReturnType<FrameHandler<ClientFrameType>>;
    try {
      outcome = handler(session, frame as never, { chars });
      if (!(outcome instanceof Promise)) this.#answer(session, frame, ref, outcome);
    } catch (error) {
      this.#failed(session, error, ref);
      return;
    }
    if (outcome instanceof Promise)
      return outcome.then(
        (settled) => this.#answer(session, frame, ref, settled),
        (error: unknown) => this.#failed(session, error, ref),
      );
  }

  /** The one place a handler's outcome becomes frames. */
  #answer(session: Session, frame: ClientFrame, ref: string | undefined, outcome: Outcome<ClientFrameType>): void {
    if (!outcome) return;
    if ("later" in outcome) {
      outcome.later.then(
        (settled) => this.#answer(session, frame, ref, settled),
        (error: unknown) => this.#failed(session, error, ref),
      );
      return;
    }
    if ("error" in outcome) return this.#refuse(session, outcome.error, { ref });
    const type = replies[frame.type as RequestType];
    if (type && ref !== undefined) session.sendFrame({ ...outcome.reply, type, ref } as never);
    outcome.afterwards?.();
  }

  /** A stock Yjs client: y-websocket messages, no envelope. Sync goes to the hub, awareness to the doc's other stock clients. */
  async #raw(session: RawDocSession, data: Data): Promise<void> {
    if (typeof data === "string") return;
    const bytes = asBytes(data);
    const decoder = decoding.createDecoder(bytes);
    let type: number;
    try {
      type = decoding.readVarUint(decoder);
    } catch {
      return;
    }
    const { team, hub, admission } = this.options;
    const doc = session.doc;
    if (type === Y_MESSAGE_SYNC) {
      const op = syncOp(decoder);
      const denied = op && authorize(session, op, { doc });
      const refusal: Refusal | null =
        denied && !emptyWrite(op, decoder) ? { error: denied } : await hub.receive(session, doc, decoder);
      if (refusal) {
        // A stock client has no error frame to read; the refusal is logged and counted.
        this.#refuse(session, refusal.error, refusal.close ? { close: true } : {});
        console.warn(`[crosstalk ${team}] stock Yjs client ${session.agent}: ${refusal.error.message}`);
      }
    } else if (type === Y_MESSAGE_AWARENESS) {
      const denied = authorize(session, "send", { doc });
      if (denied) return console.warn(`[crosstalk ${team}] stock Yjs client ${session.agent}: ${denied.message}`);
      for (const other of admission.sessions()) {
        if (other !== session && other instanceof RawDocSession && other.doc === doc) other.relay(bytes);
      }
    }
  }
}

/**
 * What a y-protocols sync message asks, read without consuming it: step 1 reads the document,
 * step 2 and updates write it. Null when unreadable (the hub reports it).
 */
function syncOp(decoder: decoding.Decoder): Op | null {
  try {
    const type = decoding.peekVarUint(decoder);
    if (type === syncProtocol.messageYjsSyncStep1) return "read";
    if (type === syncProtocol.messageYjsSyncStep2 || type === syncProtocol.messageYjsUpdate) return "write";
    return null;
  } catch {
    return null;
  }
}

/**
 * A sync step 2 or update that changes nothing: what a reader's Yjs replies to the room's
 * own step 1. Changing nothing needs no write permission (read without consuming).
 */
function emptyWrite(op: Op | null, decoder: decoding.Decoder): boolean {
  if (op !== "write") return false;
  try {
    const peek = decoding.clone(decoder);
    decoding.readVarUint(peek);
    return isEmptyUpdate(decoding.readVarUint8Array(peek));
  } catch {
    return false;
  }
}

/** A byte view of a binary WebSocket message, without copying. */
function asBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  return data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
