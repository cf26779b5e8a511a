/**
 * Event streams, client side: publishing through the room (which sequences and stores) and
 * subscribing by reading the stream's log document as it syncs — or, for an agent allowed
 * only some types of the stream (which may not read its log document), through a feed the
 * room pushes with just those types (`feed.open`), in seq order, reopened from the next
 * unhandled seq after a reconnect. Everything else (handlers, retries, durable positions)
 * is the same either way. Operations the agent's permissions forbid fail with FORBIDDEN
 * before anything is sent.
 *
 * Publishing: concurrent `publish` calls in one tick travel as one frame per stream, in
 * call order. Every frame stays in the outbox until acknowledged and is sent again, with
 * the same event ids, after a reconnect; the room's dedupe by id makes that safe.
 * Not re-exported from the package entry point; `team.ts` owns it.
 */
import * as Y from "yjs";
import {
  backoff,
  type ClientFrame,
  type ConsumerInfo,
  CrosstalkError,
  deadLetter,
  type EventInput,
  eventAt,
  eventInputSchema,
  type Json,
  LOG_SEGMENT_SIZE,
  type LogSegments,
  logDoc,
  logHead,
  logSegments,
  logTail,
  MAX_EVENT_BYTES,
  MAX_HISTORY_PAGE,
  matchesPattern,
  nameSchema,
  patternSchema,
  type ReplyOf,
  type RoomFrame,
  type StoredEvent,
  segmentOf,
  sleep,
  traceparentFor,
  typeResource,
  uuidv7,
  wholeStream,
} from "../protocol/index.ts";
import { type Access, forbidden } from "./access.ts";
import { type Decoded, decodeEvent, type EventCatalog } from "./catalog.ts";
import { check } from "./check.ts";
import type { DocSync } from "./docs.ts";
import { type EncryptionOptions, isSealed, keyIdFor, open, seal } from "./payload-crypto.ts";
import type { Persistence, StoredEntry } from "./persist.ts";
import type { Requests } from "./requests.ts";
import type { Transport } from "./transport.ts";

export type PublishOptions = {
  stream?: string;
  /** Refused with CONFLICT unless the stream's last seq is this (optimistic concurrency). */
  expectedLastSeq?: number;
  /** Defaults to a fresh UUIDv7. Publishing an id again returns the original seq. */
  id?: string;
  v?: number;
  key?: string;
  causationId?: string;
  correlationId?: string;
  /** This event's W3C trace context (a tracer's span, `crosstalk/otel`); default: a fresh span in its correlation's trace. */
  traceparent?: string;
  /**
   * End-to-end encryption of `data`: the id of the key to seal it with (see
   * `connect({ encryption })`), or false to publish in the clear. Default: the stream's key
   * in `encryption.streams`, if any.
   */
  encrypt?: string | false;
};

/** Where the room stored an event: its seq and time; `duplicate` when it had it already. */
export type Ack = { id: string; seq: number; ts: number; duplicate: boolean };

/**
 * What `publish` resolves with. Online it is the room's `Ack`. An agent with durable storage
 * (`connect({ persist })`) that is offline resolves as soon as the event is in its local
 * outbox instead: `pending: true`, `seq` and `ts` 0, and `acked` resolving with the room's
 * `Ack` once the room has it (rejected with the room's refusal, or CLOSED if the team is
 * closed first — the entry then stays in the outbox for the next run).
 */
export type PublishResult = Ack & { pending?: boolean; acked?: Promise<Ack> };

export type SubscribeOptions = {
  stream?: string;
  /** Where to start: the first event, after the current end (default), a seq, or a time. */
  from?: "start" | "end" | number | Date;
  /** A durable consumer name: the room keeps its position; the next subscriber resumes after it. */
  consumer?: string;
  /** A consumer group: each event goes to exactly one live member. */
  group?: string;
  /** Deliveries before an event goes to `<stream>.dlq` (default 5). */
  maxDeliver?: number;
  /** Base of the exponential retry backoff, ms (default 100). */
  retryDelayMs?: number;
  /** Groups: events leased to this member at once (default 16). */
  maxAckPending?: number;
  /** Groups: how long a lease lasts before the event goes to another member (default 30 s). */
  ackWaitMs?: number;
  /** Typed events: validate (and upcast) on delivery. Set by `team.events(catalog)`. */
  catalog?: EventCatalog;
  /**
   * When the stream's retention removed events this subscription has not read yet (an
   * `EVENTS_REMOVED` error), go on from the stream's first kept event instead of stopping
   * with the error (reported to `onError`). Default false: losing events is never silent.
   */
  skipRemoved?: boolean;
};

export type HistoryOptions = {
  stream?: string;
  from?: number;
  to?: number;
  /** Type patterns to keep (default: all). */
  types?: string[];
  /** Most events to yield. */
  limit?: number;
};

export type EventHandler = (event: StoredEvent) => unknown | Promise<unknown>;

export type Subscription = {
  /** Resolves once the subscription knows its starting point. */
  readonly ready: Promise<void>;
  /** The next seq this subscription will look at. */
  readonly position: number;
  unsubscribe(): void;
};

/**
 * What `subscribe` returns: the subscription, usable at once, and awaitable —
 * `const sub = await team.subscribe(…)` resolves once it is live (same as `ready`), so an
 * event published after that is never missed; a subscription that cannot start rejects.
 */
export type LiveSubscription = Subscription & PromiseLike<Subscription>;

type Pending = {
  resolve: (r: PublishResult) => void;
  reject: (e: CrosstalkError) => void;
  /** Set once the caller was answered `pending`: the room's answer goes here instead. */
  acked?: { resolve: (r: Ack) => void; reject: (e: CrosstalkError) => void };
};
type OutFrame = {
  frame: Extract<ClientFrame, { type: "publish" }>;
  waiters: Pending[];
  /** In the local outbox's storage (or needs none): may be sent. */
  durable: boolean;
  /**
   * Handed to a socket at least once (or restored from a previous run, which may have): the
   * room may have applied it, so it is resent as it was, never merged with its neighbours.
   */
  sent?: boolean;
  /** A frame merged from consecutive outbox entries on a flush: the entries, in order. */
  parts?: OutFrame[];
};

/** One frame in place of consecutive never-sent entries of one stream (see `Events.resend`). */
function merge(parts: OutFrame[]): OutFrame {
  const first = parts[0] as OutFrame;
  const last = parts.at(-1) as OutFrame;
  const frame: OutFrame["frame"] = {
    type: "publish",
    ref: `m${first.frame.ref}`,
    stream: first.frame.stream,
    events: parts.flatMap((p) => p.frame.events),
    outbox: last.frame.outbox,
  };
  for (const part of parts) part.sent = true;
  return { frame, waiters: [], durable: true, sent: true, parts };
}

/** Frames stay well under the 1 MB socket limit. */
const MAX_BATCH_BYTES = 512 * 1024;
const MAX_BATCH_EVENTS = 1000;

type Sub = {
  readonly stream: string;
  readonly pattern: string;
  readonly handler: EventHandler;
  readonly options: SubscribeOptions;
  readonly maxDeliver: number;
  /** The next seq to look at. */
  next: number;
  started: boolean;
  running: boolean;
  closed: boolean;
  /** Archive events fetched ahead while catching up from behind the live window. */
  buffer: StoredEvent[];
  /** Durable consumers: the last position reported to the room. */
  acked: number;
  /** Groups: leased events waiting for the handler. */
  inbox: Extract<RoomFrame, { type: "group.deliver" }>[];
  /**
   * Groups: the seq the handler is running now, and the last seqs it finished. The room sends
   * an agent's leases to it again after a restart, possibly crossing the ack on the wire.
   */
  handling?: number;
  finished?: Set<number>;
  /** Reading through a room-pushed feed (this id) instead of the log document; `buffer` holds its events. */
  feed: string | null;
};

type LogView = {
  stream: string;
  doc: Y.Doc;
  segments: LogSegments;
  subs: Set<Sub>;
  /**
   * The local copy holds the events from this seq on; below it, what every subscription of the
   * view had delivered was dropped from it (`Events.#shed`), and is read from the room instead.
   */
  keptFrom: number;
};

export class Events {
  /** Unacknowledged publish frames, in send order (Map keeps insertion order). */
  readonly #outbox = new Map<string, OutFrame>();
  /** Events published this tick, per stream, not yet framed. */
  readonly #queued = new Map<string, { input: EventInput; bytes: number; waiter: Pending }[]>();
  #flushScheduled = false;
  #nextRef = 0;
  readonly #views = new Map<string, LogView>();
  readonly #groupSubs = new Map<string, Sub>();
  readonly #dirtyAcks = new Set<Sub>();
  #ackScheduled = false;
  readonly #feedSubs = new Map<string, Sub>();
  #nextFeed = 0;
  /** Payload keys (`connect({ encryption })`) and the team they bind sealed payloads to; set by `team.ts`. */
  encryption: { team: string; options: EncryptionOptions } | null = null;
  /** The durable outbox (`connect({ persist })`); set by `team.ts`. */
  persist: Persistence | null = null;

  constructor(
    private readonly transport: Transport,
    private readonly docs: DocSync,
    private readonly requests: Requests,
    /** What this agent may do: forbidden operations fail here. */
    private readonly access: Access,
    /** This agent's id: names the consumer in dead letters of plain subscriptions. */
    private readonly agent: string,
    /** Reports handler failures; the subscription carries on with the next event. */
    private readonly onHandlerError: (error: unknown, event: StoredEvent | undefined) => void,
  ) {}

  publish(type: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    const { encrypt, ...rest } = options;
    const kid = this.#keyFor(options.stream ?? "main", encrypt);
    if (kid) {
      const id = options.id ?? uuidv7();
      return this.#seal(kid, { stream: options.stream ?? "main", id, type }, data).then((sealed) =>
        this.publish(type, sealed, { ...rest, id, encrypt: false }),
      );
    }
    options = rest;
    return new Promise((resolve, reject) => {
      const closed = this.transport.closedError;
      if (closed) return reject(closed);
      const stream = options.stream ?? "main";
      // A bad argument throws here, which rejects the promise.
      const checked = this.#check(stream, { ...options, type, data, id: options.id ?? uuidv7() });
      if (options.expectedLastSeq !== undefined) {
        // A conditional publish travels alone, after everything queued before it.
        this.#flush();
        return this.#enqueueFrame(stream, [checked.input], [{ resolve, reject }], options.expectedLastSeq);
      }
      let queue = this.#queued.get(stream);
      if (!queue) {
        queue = [];
        this.#queued.set(stream, queue);
      }
      queue.push({ ...checked, waiter: { resolve, reject } });
      // A full frame leaves at once: the room starts on it while the caller goes on publishing.
      if (queue.length >= MAX_BATCH_EVENTS) this.#flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        queueMicrotask(() => this.#flush());
      }
    });
  }

  /** Appends all events atomically, with contiguous seqs, or none of them. */
  publishBatch(
    items: { type: string; data: unknown; options?: Omit<PublishOptions, "stream"> }[],
    options: { stream?: string } = {},
  ): Promise<PublishResult[]> {
    const closed = this.transport.closedError;
    if (closed) return Promise.reject(closed);
    const stream = options.stream ?? "main";
    if (items.some((item) => this.#keyFor(stream, item.options?.encrypt))) {
      return Promise.all(
        items.map(async ({ type, data, options: { encrypt, ...rest } = {} }) => {
          const kid = this.#keyFor(stream, encrypt);
          const id = rest.id ?? uuidv7();
          const sealed = kid ? await this.#seal(kid, { stream, id, type }, data) : data;
          return { type, data: sealed, options: { ...rest, id, encrypt: false as const } };
        }),
      ).then((sealed) => this.publishBatch(sealed, options));
    }
    const inputs: EventInput[] = [];
    let bytes = 0;
    try {
      for (const item of items) {
        const checked = this.#check(stream, {
          ...item.options,
          type: item.type,
          data: item.data,
          id: item.options?.id ?? uuidv7(),
          encrypt: undefined,
        });
        inputs.push(checked.input);
        bytes += checked.bytes;
      }
    } catch (error) {
      return Promise.reject(error);
    }
    if (inputs.length === 0) return Promise.resolve([]);
    if (inputs.length > MAX_BATCH_EVENTS || bytes > MAX_BATCH_BYTES) {
      return Promise.reject(
        new CrosstalkError(
          "TOO_LARGE",
          `an atomic batch holds at most ${MAX_BATCH_EVENTS} events and ${MAX_BATCH_BYTES} bytes`,
        ),
      );
    }
    // Anything queued this tick goes first, keeping call order.
    this.#flush();
    return new Promise((resolve, reject) => {
      const results: PublishResult[] = [];
      const waiters = inputs.map((_, i) => ({
        resolve: (r: PublishResult) => {
          results[i] = r;
          if (i === inputs.length - 1) resolve(results);
        },
        reject,
      }));
      this.#enqueueFrame(stream, inputs, waiters);
    });
  }

  /** The key id to seal a payload of `stream` with, if any. */
  #keyFor(stream: string, encrypt: string | false | undefined): string | null {
    return keyIdFor(encrypt, this.encryption?.options.streams, stream);
  }

  #seal(kid: string, event: { stream: string; id: string; type: string }, data: unknown): Promise<unknown> {
    if (!this.encryption)
      return Promise.reject(new CrosstalkError("INVALID_ARGUMENT", "no payload keys: connect({ encryption })"));
    return seal(this.encryption.options.keys, kid, { team: this.encryption.team, ...event }, data);
  }

  /** The event with its sealed payload opened (unchanged when it is not sealed or no keys are set); throws DECRYPT_FAILED. */
  async #open(event: StoredEvent): Promise<StoredEvent> {
    if (!this.encryption || !isSealed(event.data)) return event;
    const ctx = { team: this.encryption.team, stream: event.stream, id: event.id, type: event.type };
    return { ...event, data: (await open(this.encryption.options.keys, ctx, event.data)) as StoredEvent["data"] };
  }

  /** The event as it will be sent, and its size; throws a typed error for a bad one. */
  #check(stream: string, raw: Record<string, unknown>): { input: EventInput; bytes: number } {
    try {
      check(nameSchema, stream, "stream name");
      const input = check(eventInputSchema, raw, "event");
      this.access.check("stream.publish", typeResource(stream, input.type));
      // Every event starts or continues a piece of work: it always carries a correlation id and trace context.
      input.correlationId ??= input.id;
      input.traceparent ??= traceparentFor(input.correlationId);
      const bytes = JSON.stringify(input).length;
      if (bytes > MAX_EVENT_BYTES)
        throw new CrosstalkError("TOO_LARGE", `event is ${bytes} bytes; the limit is ${MAX_EVENT_BYTES}`);
      return { input, bytes };
    } catch (error) {
      if (error instanceof CrosstalkError) throw error;
      // zod accepts a circular value that JSON.stringify then refuses (TypeError); a value nested
      // deeper than the stack overflows either (RangeError). Neither may escape as a raw error.
      throw new CrosstalkError("INVALID_ARGUMENT", `event data is not JSON: ${(error as Error).message}`);
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    for (const [stream, queue] of this.#queued) {
      let start = 0;
      let bytes = 0;
      for (let i = 0; i <= queue.length; i++) {
        const item = queue[i];
        const full = item && (i - start >= MAX_BATCH_EVENTS || bytes + item.bytes > MAX_BATCH_BYTES);
        if (i > start && (!item || full)) {
          const slice = queue.slice(start, i);
          this.#enqueueFrame(
            stream,
            slice.map((q) => q.input),
            slice.map((q) => q.waiter),
          );
          start = i;
          bytes = 0;
        }
        if (item) bytes += item.bytes;
      }
    }
    this.#queued.clear();
  }

  #enqueueFrame(stream: string, events: EventInput[], waiters: Pending[], expectedLastSeq?: number): void {
    const ref = `p${++this.#nextRef}`;
    const frame: OutFrame["frame"] = { type: "publish", ref, stream, events };
    if (expectedLastSeq !== undefined) frame.expectedLastSeq = expectedLastSeq;
    // A conditional publish depends on the stream as it is now: it is never kept for later.
    if (this.persist && expectedLastSeq === undefined) return this.#enqueueDurable(frame, waiters);
    const out: OutFrame = { frame, waiters, durable: true };
    this.#outbox.set(ref, out);
    this.transport.send(out.frame);
  }

  /** Written to the local outbox first, sent once durable; offline, its callers are answered `pending`. */
  #enqueueDurable(frame: OutFrame["frame"], waiters: Pending[]): void {
    const out: OutFrame = { frame, waiters, durable: false };
    (this.persist as Persistence).enqueue(
      frame,
      this.#outbox,
      out,
      () => {
        if (this.transport.send(frame)) out.sent = true;
        else this.#answerPending(out);
      },
      (error) => {
        for (const w of out.waiters) w.reject(error);
      },
    );
  }

  /** Callers of a durable frame the room has not answered yet get `pending` and an `acked` promise. */
  #answerPending(out: OutFrame): void {
    if (out.parts) for (const part of out.parts) this.#answerPending(part);
    out.waiters.forEach((w, i) => {
      if (w.acked) return;
      const acked = new Promise<Ack>((resolve, reject) => {
        w.acked = { resolve, reject };
      });
      // Nobody need await it: a refusal is also reported through the team's `error` event.
      acked.catch(() => {});
      const id = out.frame.events[i]?.id ?? "";
      w.resolve({ id, seq: 0, ts: 0, duplicate: false, pending: true, acked });
    });
  }

  /** Frames a previous run left in the durable outbox: sent (again) on the next connect. */
  restore(entries: StoredEntry[]): void {
    for (const { frame } of entries) {
      if (frame.type !== "publish") continue;
      this.#outbox.set(frame.ref, { frame, waiters: [], durable: true, sent: true });
    }
  }

  /** The socket dropped: callers of durable frames stop waiting for the room. */
  offline(): void {
    for (const out of this.#outbox.values()) if (out.durable && out.frame.outbox) this.#answerPending(out);
  }

  /**
   * On (re)connect: send every unacknowledged frame again, oldest first. Consecutive durable
   * entries of one stream that were never sent (queued offline) go as one frame: the room
   * spends its time per frame, and a flush of one-at-a-time publishes is mostly frames. The
   * merged frame carries the last entry's outbox number. It is applied whole or not at all,
   * and since no entry in it was ever sent, the room's mark for the stream is below all of
   * them: applied once, a resend of it (or of its entries after a restart) is at or below
   * the mark, a duplicate.
   */
  resend(): void {
    const order: OutFrame[] = [];
    let run: OutFrame[] = [];
    let runBytes = 0;
    let runEvents = 0;
    const endRun = () => {
      if (run.length === 1) order.push(run[0] as OutFrame);
      else if (run.length > 1) order.push(merge(run));
      run = [];
      runBytes = 0;
      runEvents = 0;
    };
    for (const out of this.#outbox.values()) {
      const mergeable = out.durable && !out.sent && !out.parts && out.frame.outbox !== undefined;
      if (!mergeable) {
        endRun();
        order.push(out);
        continue;
      }
      const bytes = JSON.stringify(out.frame.events).length;
      const first = run[0];
      if (
        first &&
        (first.frame.stream !== out.frame.stream ||
          runEvents + out.frame.events.length > MAX_BATCH_EVENTS ||
          runBytes + bytes > MAX_BATCH_BYTES)
      )
        endRun();
      run.push(out);
      runBytes += bytes;
      runEvents += out.frame.events.length;
    }
    endRun();
    this.#outbox.clear();
    for (const out of order) {
      this.#outbox.set(out.frame.ref, out);
      if (out.durable && this.transport.send(out.frame)) out.sent = true;
    }
  }

  /** Unacknowledged frames, for tests. */
  get pending(): number {
    return this.#outbox.size;
  }

  /** Events published this tick, not yet in a frame (nor in the durable outbox). */
  get queuedEvents(): number {
    let n = 0;
    for (const queue of this.#queued.values()) n += queue.length;
    return n;
  }

  /** Events in unacknowledged frames (a frame carries the publishes of one tick). */
  get pendingEvents(): number {
    let n = 0;
    for (const out of this.#outbox.values()) n += out.frame.events.length;
    return n;
  }

  ack(ref: string, results: Ack[]): void {
    const out = this.#outbox.get(ref);
    if (!out) return;
    this.#outbox.delete(ref);
    this.#acked(out, results);
  }

  #acked(out: OutFrame, results: Ack[]): void {
    if (out.parts) {
      let at = 0;
      for (const part of out.parts) {
        this.#acked(part, results.slice(at, at + part.frame.events.length));
        at += part.frame.events.length;
      }
      return;
    }
    this.persist?.remove(out.frame.ref);
    out.waiters.forEach((w, i) => {
      const r = results[i];
      if (r) (w.acked ?? w).resolve(r);
      else (w.acked ?? w).reject(new CrosstalkError("INTERNAL", "the room acknowledged fewer events than were sent"));
    });
  }

  /** The room refused frame `ref`: nothing in it was appended. */
  refused(ref: string, error: CrosstalkError): boolean {
    const out = this.#outbox.get(ref);
    if (!out) return false;
    this.#outbox.delete(ref);
    // A merged frame is refused whole, like an atomic batch: its entries cannot go again one
    // by one, since later entries of the stream (higher numbers) may already be applied.
    for (const part of out.parts ?? [out]) {
      this.persist?.remove(part.frame.ref);
      for (const w of part.waiters) (w.acked ?? w).reject(error);
    }
    return true;
  }

  /** The team closed: nobody waits any more. Durable frames stay in storage for the next run. */
  failAll(error: CrosstalkError): void {
    this.#flush();
    for (const out of this.#outbox.values())
      for (const part of out.parts ?? [out]) for (const w of part.waiters) (w.acked ?? w).reject(error);
    this.#outbox.clear();
  }

  // -------------------------------------------------------------------------------------
  // Subscribing

  subscribe(pattern: string, handler: EventHandler, options: SubscribeOptions = {}): LiveSubscription {
    const stream = options.stream ?? "main";
    check(patternSchema, pattern, "pattern");
    for (const [what, value] of [
      ["stream", stream],
      ["consumer", options.consumer],
      ["group", options.group],
    ] as const) {
      if (value !== undefined) check(nameSchema, value, `${what} name`);
    }
    if (options.consumer && options.group) {
      throw new CrosstalkError(
        "INVALID_ARGUMENT",
        "a subscription is either a durable consumer or a group member, not both",
      );
    }
    const sub: Sub = {
      stream,
      pattern,
      handler,
      options,
      maxDeliver: options.maxDeliver ?? 5,
      next: 1,
      started: false,
      running: false,
      closed: false,
      buffer: [],
      acked: 0,
      inbox: [],
      feed: null,
    };
    const ready = options.group ? this.#startGroup(sub, options.group) : this.#startLog(sub);
    // A failure to start is reported, never thrown into an unrelated promise chain.
    ready.catch((error: unknown) => this.onHandlerError(error, undefined));
    const handle: Subscription = {
      ready,
      get position() {
        return sub.next;
      },
      unsubscribe: () => this.#unsubscribe(sub),
    };
    return {
      ready,
      get position() {
        return sub.next;
      },
      unsubscribe: handle.unsubscribe,
      // biome-ignore lint/suspicious/noThenProperty: awaiting a subscription waits until it is live; it resolves to `handle`, which has no `then`, so `await` stops there.
      then: (onLive, onFailed) => ready.then(() => handle).then(onLive, onFailed),
    };
  }

  #unsubscribe(sub: Sub): void {
    if (sub.closed) return;
    sub.closed = true;
    if (sub.options.group) {
      this.#groupSubs.delete(groupKey(sub.stream, sub.options.group));
      this.transport.send({ type: "group.leave", stream: sub.stream, group: sub.options.group });
      return;
    }
    if (sub.feed !== null) {
      this.#feedSubs.delete(sub.feed);
      this.transport.send({ type: "feed.close", feed: sub.feed });
      return;
    }
    const view = this.#views.get(sub.stream);
    if (!view) return;
    view.subs.delete(sub);
    if (view.subs.size === 0) {
      this.#views.delete(sub.stream);
      this.docs.release(logDoc(sub.stream));
    }
  }

  async #startLog(sub: Sub): Promise<void> {
    await this.access.known;
    if (sub.closed) return;
    // The log document carries every type: only an agent that may read them all syncs it.
    if (!this.access.permits("stream.subscribe", wholeStream(sub.stream), { pattern: true })) {
      return this.#startFeed(sub);
    }
    const view = this.#view(sub.stream);
    view.subs.add(sub);
    try {
      await this.docs.synced(logDoc(sub.stream));
    } catch (error) {
      // The agent lost read access to the whole stream meanwhile: read what it may through a feed.
      this.#leaveView(sub);
      if (error instanceof CrosstalkError && error.code === "FORBIDDEN") return this.#startFeed(sub);
      throw error;
    }
    let start: number | null = null;
    if (sub.options.consumer) {
      const state = await this.requests.askUntilAnswered({
        type: "consumer.get",
        stream: sub.stream,
        consumer: sub.options.consumer,
      });
      if (state.acked !== null) start = state.acked + 1;
    }
    start ??= await this.#startSeq(view, sub.options.from ?? "end");
    if (sub.closed) return;
    sub.next = start;
    sub.acked = start - 1;
    sub.started = true;
    // A new durable consumer is registered at its starting point right away.
    if (sub.options.consumer) this.#ack(sub, true);
    void this.#pump(sub);
  }

  #leaveView(sub: Sub): void {
    const view = this.#views.get(sub.stream);
    if (!view?.subs.delete(sub) || view.subs.size > 0) return;
    this.#views.delete(sub.stream);
    this.docs.release(logDoc(sub.stream));
  }

  /** A subscription through a room-pushed, type-filtered feed (the agent may read only some types). */
  async #startFeed(sub: Sub): Promise<void> {
    if (sub.closed) return;
    if (!this.access.reaches("stream.subscribe", typeResource(sub.stream, sub.pattern))) {
      throw forbidden("stream.subscribe", typeResource(sub.stream, sub.pattern));
    }
    sub.feed = `f${++this.#nextFeed}`;
    this.#feedSubs.set(sub.feed, sub);
    let from: number | "end" = "end";
    let fromTime: number | undefined;
    let resumed = false;
    if (sub.options.consumer) {
      const state = await this.requests.askUntilAnswered({
        type: "consumer.get",
        stream: sub.stream,
        consumer: sub.options.consumer,
      });
      if (state.acked !== null) {
        from = state.acked + 1;
        resumed = true;
      }
    }
    const option = sub.options.from ?? "end";
    if (!resumed) {
      if (option === "start") from = 1;
      else if (option instanceof Date) fromTime = option.getTime();
      else if (typeof option === "number") {
        if (!Number.isInteger(option) || option < 1)
          throw new CrosstalkError("INVALID_ARGUMENT", "from must be a seq >= 1");
        from = option;
      }
    }
    let started: ReplyOf<"feed.open">;
    try {
      started = await this.#openFeed(sub, from, fromTime);
    } catch (error) {
      const firstSeq = removedUpTo(error);
      if (firstSeq === null || !sub.options.skipRemoved) throw error;
      started = await this.#openFeed(sub, firstSeq);
    }
    if (sub.closed) return;
    sub.next = started.from;
    sub.acked = started.from - 1;
    sub.started = true;
    if (sub.options.consumer) this.#ack(sub, true);
    void this.#pump(sub);
  }

  #openFeed(sub: Sub, from: number | "end", fromTime?: number): Promise<ReplyOf<"feed.open">> {
    return this.requests.askUntilAnswered({
      type: "feed.open",
      feed: sub.feed as string,
      stream: sub.stream,
      pattern: sub.pattern,
      from,
      ...(fromTime !== undefined ? { fromTime } : {}),
    });
  }

  /** Events of a feed, in seq order: buffered for the subscription's handler. */
  feedEvents(frame: Extract<RoomFrame, { type: "feed.events" }>): void {
    const sub = this.#feedSubs.get(frame.feed);
    if (!sub || sub.closed) return;
    const last = sub.buffer.at(-1)?.seq ?? 0;
    for (const event of frame.events) if (event.seq >= sub.next && event.seq > last) sub.buffer.push(event);
    if (sub.started) void this.#pump(sub);
  }

  /**
   * The room withdrew the agent's read access to `stream`'s log document (the policy
   * changed): its running subscriptions go on through feeds from where they are, with the
   * types the agent may still read. Ones still starting switch by themselves.
   */
  logRefused(stream: string): void {
    const view = this.#views.get(stream);
    if (!view) return;
    for (const sub of [...view.subs]) {
      if (!sub.started) continue;
      view.subs.delete(sub);
      sub.feed = `f${++this.#nextFeed}`;
      sub.buffer = [];
      this.#feedSubs.set(sub.feed, sub);
      this.#openFeed(sub, sub.next).catch((error: unknown) => this.onHandlerError(error, undefined));
    }
    if (view.subs.size === 0) {
      this.#views.delete(stream);
      this.docs.release(logDoc(stream));
    }
  }

  #view(stream: string): LogView {
    let view = this.#views.get(stream);
    if (!view) {
      const doc = this.docs.open(logDoc(stream));
      const created: LogView = { stream, doc, segments: logSegments(doc), subs: new Set(), keptFrom: 1 };
      doc.on("afterTransaction", () => {
        for (const sub of created.subs) if (sub.started) void this.#pump(sub);
      });
      this.#views.set(stream, created);
      view = created;
    }
    return view;
  }

  /** The first seq a subscription reads, given where the log stands now. */
  async #startSeq(view: LogView, from: NonNullable<SubscribeOptions["from"]>): Promise<number> {
    const head = logHead(view.segments);
    if (from === "end") return head + 1;
    if (from === "start") return 1;
    if (typeof from === "number") {
      if (!Number.isInteger(from) || from < 1) throw new CrosstalkError("INVALID_ARGUMENT", "from must be a seq >= 1");
      return from;
    }
    // A Date: room timestamps never decrease along the log, so binary search for the first
    // event at or after it; below the live window, probe the archive through the room.
    const t = from.getTime();
    const tail = logTail(view.segments);
    const tsAt = async (seq: number): Promise<number> => {
      const live = localEvent(view, seq);
      if (live) return live.ts;
      const page = await this.requests.askUntilAnswered({
        type: "history",
        stream: view.stream,
        from: seq,
        to: seq,
        limit: 1,
      });
      return page.events[0]?.ts ?? Number.POSITIVE_INFINITY;
    };
    let lo = tail <= head && (await tsAt(tail)) >= t ? 1 : tail;
    let hi = head + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if ((await tsAt(mid)) < t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * The next event at or after `sub.next` when it is at hand, read without waiting: from its
   * feed's buffer, the live document, or the archive page fetched last.
   */
  #nextAtHand(sub: Sub): StoredEvent | undefined {
    if (sub.feed !== null) {
      while (sub.buffer[0] && sub.buffer[0].seq < sub.next) sub.buffer.shift();
      return sub.buffer.shift();
    }
    const view = this.#views.get(sub.stream);
    if (!view) return undefined;
    const live = localEvent(view, sub.next);
    if (live) return live;
    // Pages are contiguous but for seqs retention compacted away: the next buffered event
    // is the next event.
    const buffered = sub.buffer[0];
    if (buffered && buffered.seq >= sub.next) return sub.buffer.shift();
    return undefined;
  }

  /**
   * The next event at or after `sub.next`: from its feed, or from the live document, or a
   * page of the archive when behind.
   */
  async #nextEvent(sub: Sub): Promise<StoredEvent | undefined> {
    const ready = this.#nextAtHand(sub);
    if (ready || sub.feed !== null) return ready;
    const view = this.#views.get(sub.stream);
    if (!view) return undefined;
    sub.buffer = [];
    // Below what the local copy holds: the archive, or events this agent dropped once delivered.
    const tail = Math.max(logTail(view.segments), view.keptFrom);
    if (sub.next >= tail) return undefined;
    let page: ReplyOf<"history">;
    try {
      page = await this.requests.ask({
        type: "history",
        stream: sub.stream,
        from: sub.next,
        to: tail - 1,
        limit: MAX_HISTORY_PAGE,
      });
    } catch (error) {
      // Retention removed where this subscription stands: resume at the stream's first event if asked to.
      const firstSeq = removedUpTo(error);
      if (firstSeq === null || !sub.options.skipRemoved || firstSeq <= sub.next) throw error;
      sub.next = firstSeq;
      return this.#nextEvent(sub);
    }
    if (page.events.length === 0) {
      // Everything up to the live window was compacted away.
      sub.next = tail;
      return this.#nextEvent(sub);
    }
    sub.buffer = page.events.filter((e) => e.seq >= sub.next);
    return sub.buffer.shift();
  }

  /** Delivers events to one subscription in seq order, one handler call at a time. */
  async #pump(sub: Sub): Promise<void> {
    if (sub.running || sub.closed) return;
    sub.running = true;
    try {
      // Handlers never run inside the caller's stack (a Yjs transaction's end, `subscribe`).
      await Promise.resolve();
      for (;;) {
        // A run of events at hand, with handlers that finish synchronously, is delivered
        // without a promise per event: only waiting for the archive or a handler awaits.
        let event = this.#nextAtHand(sub);
        if (!event) {
          try {
            event = await this.#nextEvent(sub);
          } catch (error) {
            // Offline while reading the archive: the next (re)sync of the log wakes us again.
            if (error instanceof CrosstalkError && error.retryable) break;
            throw error;
          }
        }
        if (!event || sub.closed) break;
        if (matchesPattern(sub.pattern, event.type)) {
          const delivering = this.#deliver(sub, event);
          if (delivering) await delivering;
        }
        sub.next = event.seq + 1;
        this.#ack(sub);
      }
    } catch (error) {
      this.onHandlerError(error, undefined);
    } finally {
      sub.running = false;
      const view = sub.feed === null ? this.#views.get(sub.stream) : undefined;
      if (view?.subs.has(sub)) this.#shed(view);
    }
  }

  /**
   * Drops from the local log copy the content of the events every subscription of `view` has
   * delivered, keeping each entry's place (the copy's Yjs structure, so its sync with the room
   * is unchanged). Left there, the 10,000 decoded events of a live window stayed on the heap of
   * every subscribing agent until their segment left the window, and the garbage collector's
   * pauses grew with them. A subscription that reads them later (a new one, from a seq or a
   * time) gets them from the room, as it gets the archive. Not with durable storage, which
   * keeps the window for offline reads (`history`) and stores the copy itself.
   */
  #shed(view: LogView): void {
    if (this.persist) return;
    let upTo = Number.POSITIVE_INFINITY;
    for (const sub of view.subs) {
      if (!sub.started) return;
      upTo = Math.min(upTo, sub.next);
    }
    let seq = Math.max(view.keptFrom, logTail(view.segments));
    while (seq < upTo) {
      const segNo = segmentOf(seq);
      const segment = view.segments.get(String(segNo));
      if (!segment) break;
      // Room-written and append-only: the segment's items in seq order.
      let first = segNo * LOG_SEGMENT_SIZE + 1;
      for (let item = segment._start; item && seq < upTo; item = item.right) {
        if (item.deleted || !item.countable) continue;
        const end = first + item.length;
        if (end > seq && item.content instanceof Y.ContentAny) {
          const arr = item.content.arr;
          for (const stop = Math.min(end, upTo); seq < stop; seq++) arr[seq - first] = null;
        }
        first = end;
      }
      // Only a full segment is followed by the next one.
      if (first <= (segNo + 1) * LOG_SEGMENT_SIZE) break;
    }
    view.keptFrom = Math.max(view.keptFrom, seq);
  }

  /**
   * Runs the handler for one event: retried with backoff on failure up to `maxDeliver`
   * deliveries, then dead-lettered. An event that fails its schema is dead-lettered at once.
   * Undefined when it is done already (a plain event whose handler returned no promise);
   * otherwise a promise of done.
   */
  #deliver(sub: Sub, sealed: StoredEvent): Promise<void> | undefined {
    if (this.encryption && isSealed(sealed.data)) return this.#deliverSealed(sub, sealed);
    return this.#deliverOpen(sub, sealed, sealed);
  }

  async #deliverSealed(sub: Sub, sealed: StoredEvent): Promise<void> {
    let raw: StoredEvent;
    try {
      raw = await this.#open(sealed);
    } catch (error) {
      // It will not decrypt on a retry either: reported, and dead-lettered (still sealed).
      this.onHandlerError(error, sealed);
      await this.#deadLetter(sub, sealed, errorMessage(error), 0);
      return;
    }
    await this.#deliverOpen(sub, sealed, raw);
  }

  #deliverOpen(sub: Sub, sealed: StoredEvent, raw: StoredEvent): Promise<void> | undefined {
    const decoded = this.#decode(sub, raw);
    // Dead letters keep the payload as it was published: sealed stays sealed.
    if (!decoded.ok) return this.#deadLetter(sub, sealed, decoded.error, 0, decoded.issues).then(() => {});
    const event = decoded.event;
    let result: unknown;
    try {
      result = sub.handler(event);
    } catch (error) {
      return this.#retry(sub, sealed, raw, event, error);
    }
    if (!isThenable(result)) return undefined;
    return Promise.resolve(result).then(
      () => {},
      (error: unknown) => this.#retry(sub, sealed, raw, event, error),
    );
  }

  /** After the first delivery of `event` failed with `error`: the retries, then the dead letter. */
  async #retry(sub: Sub, sealed: StoredEvent, raw: StoredEvent, event: StoredEvent, error: unknown): Promise<void> {
    for (let delivery = 1; ; delivery++) {
      if (sub.closed) return;
      this.onHandlerError(error, raw);
      if (delivery >= sub.maxDeliver) {
        await this.#deadLetter(sub, sealed, errorMessage(error), delivery);
        return;
      }
      await sleep(backoff(delivery - 1, { baseMs: sub.options.retryDelayMs ?? 100, capMs: 10_000 }));
      try {
        await sub.handler(event);
        return;
      } catch (next) {
        error = next;
      }
    }
  }

  #decode(sub: Sub, event: StoredEvent): Decoded {
    return sub.options.catalog ? decodeEvent(sub.options.catalog, event) : { ok: true, event };
  }

  /** Publishes the event with its failure to `<stream>.dlq` (the record: `protocol/dlq.ts`). */
  #deadLetter(sub: Sub, event: StoredEvent, error: string, deliveries: number, issues?: Json): Promise<unknown> {
    const consumer = sub.options.consumer ?? sub.options.group ?? this.agent;
    const { stream, input } = deadLetter(event, { consumer, error, deliveries, issues });
    const { type, data, ...options } = input;
    return this.publish(type, data, { ...options, stream });
  }

  /**
   * Reports a position the room's retention must not pass (`party/retention.ts`) under a
   * durable consumer name, without a subscription: projections keep their own position and
   * report it here. Sent at most every 200 ms: a position reported late only makes
   * retention wait longer, never remove more. Positions only move forward.
   */
  hold(stream: string, consumer: string, seq: number): void {
    const key = `${stream}\u0000${consumer}`;
    const pending = this.#holds.get(key);
    this.#holds.set(key, { stream, consumer, seq: Math.max(seq, pending?.seq ?? 0) });
    if (this.#holdScheduled) return;
    this.#holdScheduled = true;
    setTimeout(() => {
      this.#holdScheduled = false;
      for (const h of this.#holds.values())
        this.transport.send({ type: "consumer.ack", stream: h.stream, consumer: h.consumer, seq: h.seq });
      this.#holds.clear();
    }, 200);
  }
  readonly #holds = new Map<string, { stream: string; consumer: string; seq: number }>();
  #holdScheduled = false;

  /** Reports a durable consumer's position; coalesced per tick. */
  #ack(sub: Sub, now = false): void {
    const consumer = sub.options.consumer;
    if (!consumer || sub.next - 1 <= sub.acked) {
      if (!now || !consumer) return;
    }
    sub.acked = Math.max(sub.acked, sub.next - 1);
    this.#dirtyAcks.add(sub);
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    queueMicrotask(() => {
      this.#ackScheduled = false;
      for (const s of this.#dirtyAcks) {
        if (s.options.consumer) {
          this.transport.send({ type: "consumer.ack", stream: s.stream, consumer: s.options.consumer, seq: s.acked });
        }
      }
      this.#dirtyAcks.clear();
    });
  }

  // --- consumer groups ------------------------------------------------------------------

  async #startGroup(sub: Sub, group: string): Promise<void> {
    await this.access.known;
    // The room leases the group's events whatever their type: the whole pattern must be readable.
    this.access.check("stream.subscribe", typeResource(sub.stream, sub.pattern), { pattern: true });
    const key = groupKey(sub.stream, group);
    if (this.#groupSubs.has(key))
      throw new CrosstalkError("CONFLICT", `already a member of group ${group} on ${sub.stream}`);
    this.#groupSubs.set(key, sub);
    // Started before the join is answered, so a reconnect in between joins again.
    sub.started = true;
    await this.#joinGroup(sub);
  }

  #joinGroup(sub: Sub): Promise<ReplyOf<"group.join">> {
    const { options } = sub;
    const from = options.from instanceof Date ? "start" : (options.from ?? "end");
    return this.requests.askUntilAnswered({
      type: "group.join",
      stream: sub.stream,
      group: options.group as string,
      pattern: sub.pattern,
      from,
      maxAckPending: options.maxAckPending ?? 16,
      ackWaitMs: options.ackWaitMs ?? 30_000,
      maxDeliver: sub.maxDeliver,
    });
  }

  /** A leased event for a group member: handled in arrival order, one at a time. */
  groupDeliver(frame: Extract<RoomFrame, { type: "group.deliver" }>): void {
    const sub = this.#groupSubs.get(groupKey(frame.stream, frame.group));
    // A lease the room kept across its restart comes back: one handled or being handled is not run again.
    const seq = frame.event.seq;
    if (!sub || sub.closed || seq === sub.handling || sub.finished?.has(seq)) return;
    sub.inbox.push(frame);
    if (!sub.running) void this.#drainGroup(sub);
  }

  async #drainGroup(sub: Sub): Promise<void> {
    sub.running = true;
    try {
      for (let frame = sub.inbox.shift(); frame && !sub.closed; frame = sub.inbox.shift()) {
        const base = { stream: frame.stream, group: frame.group, seq: frame.event.seq };
        const decoded = this.#decode(sub, frame.event);
        if (!decoded.ok) {
          this.transport.send({ type: "group.nak", ...base, error: decoded.error, deadLetter: true });
          continue;
        }
        try {
          sub.handling = base.seq;
          await sub.handler(decoded.event);
          this.transport.send({ type: "group.ack", ...base });
          sub.finished ??= new Set();
          sub.finished.add(base.seq);
          if (sub.finished.size > FINISHED_SEQS) sub.finished.delete(sub.finished.values().next().value as number);
        } catch (error) {
          this.onHandlerError(error, frame.event);
          this.transport.send({ type: "group.nak", ...base, error: errorMessage(error) });
        } finally {
          sub.handling = undefined;
        }
      }
    } finally {
      sub.running = false;
    }
  }

  /** After (re)connecting: rejoin groups (the room forgets members on disconnect), re-report positions. */
  online(): void {
    for (const sub of this.#groupSubs.values()) {
      sub.inbox = [];
      if (sub.started) this.#joinGroup(sub).catch((error: unknown) => this.onHandlerError(error, undefined));
    }
    for (const view of this.#views.values()) {
      for (const sub of view.subs) {
        if (!sub.started) continue;
        if (sub.options.consumer) this.#ack(sub, true);
        // A subscription that stopped reading the archive when the socket dropped goes on.
        void this.#pump(sub);
      }
    }
    // Feeds die with their socket: open them again from the next event not yet handled.
    for (const sub of this.#feedSubs.values()) {
      if (!sub.started) continue;
      sub.buffer = [];
      if (sub.options.consumer) this.#ack(sub, true);
      this.#openFeed(sub, sub.next).catch((error: unknown) => this.onHandlerError(error, undefined));
    }
  }

  // --- history --------------------------------------------------------------------------

  /** The stream's full history (archive included), page by page, filtered by type patterns. */
  async *history(options: HistoryOptions = {}): AsyncGenerator<StoredEvent> {
    const stream = options.stream ?? "main";
    check(nameSchema, stream, "stream name");
    // The room leaves out the types this agent may not read.
    if (!this.access.reaches("stream.subscribe", wholeStream(stream)))
      throw forbidden("stream.subscribe", wholeStream(stream));
    const patterns = options.types ?? [">"];
    let next: number | null = options.from ?? 1;
    let left = options.limit ?? Number.POSITIVE_INFINITY;
    if (this.persist && !this.transport.online) {
      // Offline: the stream's live window as last synced, from local storage (older events are the room's).
      const name = logDoc(stream);
      const segments = logSegments(this.docs.open(name));
      try {
        const head = Math.min(logHead(segments), options.to ?? Number.POSITIVE_INFINITY);
        for (let seq = Math.max(next, logTail(segments)); seq <= head && left > 0; seq++) {
          const event = eventAt(segments, seq);
          if (!event || !patterns.some((p) => matchesPattern(p, event.type))) continue;
          yield await this.#open(event);
          left--;
        }
      } finally {
        this.docs.release(name);
      }
      return;
    }
    while (next !== null && left > 0) {
      const page: ReplyOf<"history"> = await this.requests.ask({
        type: "history",
        stream,
        from: next,
        ...(options.to !== undefined ? { to: options.to } : {}),
        limit: MAX_HISTORY_PAGE,
      });
      for (const event of page.events) {
        if (!patterns.some((p) => matchesPattern(p, event.type))) continue;
        yield await this.#open(event);
        if (--left <= 0) return;
      }
      next = page.events.length > 0 ? page.next : null;
    }
  }

  async consumers(stream = "main"): Promise<{ head: number; consumers: ConsumerInfo[] }> {
    if (!this.access.reaches("stream.subscribe", wholeStream(stream)))
      throw forbidden("stream.subscribe", wholeStream(stream));
    const reply = await this.requests.ask({ type: "consumers.list", stream });
    return { head: reply.head, consumers: reply.consumers };
  }
}

/** The event at `seq` in the local log copy, unless it is not there or was dropped once delivered (`Events.#shed`). */
const localEvent = (view: LogView, seq: number): StoredEvent | undefined =>
  seq < view.keptFrom ? undefined : eventAt(view.segments, seq);

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  (typeof value === "object" || typeof value === "function") &&
  value !== null &&
  typeof (value as { then?: unknown }).then === "function";

/** Finished group seqs a member remembers, to skip a lease the room sends again after its restart. */
const FINISHED_SEQS = 1024;

const groupKey = (stream: string, group: string) => `${stream}\u0000${group}`;
const errorMessage = (error: unknown) => (error instanceof Error ? error.message : String(error)).slice(0, 2000);

/** The first seq a stream still keeps, when `error` says retention removed what was asked for. */
function removedUpTo(error: unknown): number | null {
  if (!(error instanceof CrosstalkError) || error.code !== "EVENTS_REMOVED") return null;
  const details = error.details as { firstSeq?: unknown } | undefined;
  return typeof details?.firstSeq === "number" ? details.firstSeq : null;
}
