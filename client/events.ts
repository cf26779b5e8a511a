/**
 * Event streams, client side: publishing through the room (which sequences and stores) and
 * subscribing by reading the stream's log document as it syncs.
 *
 * Publishing: concurrent `publish` calls in one tick travel as one frame per stream, in
 * call order. Every frame stays in the outbox until acknowledged and is sent again, with
 * the same event ids, after a reconnect; the room's dedupe by id makes that safe.
 * Not re-exported from the package entry point; `team.ts` owns it.
 */
import type * as Y from "yjs";
import type { DocSync } from "./docs.ts";
import { CrosstalkError } from "./errors.ts";
import { uuidv7 } from "./ids.ts";
import { eventAt, type LogSegments, logHead, logSegments, logTail } from "./log.ts";
import {
  type ClientFrame,
  type EventInput,
  eventInputSchema,
  logDoc,
  MAX_EVENT_BYTES,
  matchesPattern,
  nameSchema,
  patternSchema,
  type StoredEvent,
} from "./protocol.ts";
import type { Transport } from "./transport.ts";

export type PublishOptions = {
  stream?: string;
  /** Defaults to a fresh UUIDv7. Publishing an id again returns the original seq. */
  id?: string;
  v?: number;
  key?: string;
  causationId?: string;
  correlationId?: string;
};

export type PublishResult = { id: string; seq: number; ts: number; duplicate: boolean };

export type SubscribeOptions = {
  stream?: string;
  /** Where to start: the first event, after the current end (default), a seq, or a time. */
  from?: "start" | "end" | number | Date;
};

export type EventHandler = (event: StoredEvent) => unknown | Promise<unknown>;

export type Subscription = {
  /** Resolves once the subscription knows its starting point. */
  readonly ready: Promise<void>;
  /** The next seq this subscription will look at. */
  readonly position: number;
  unsubscribe(): void;
};

type Pending = { resolve: (r: PublishResult) => void; reject: (e: CrosstalkError) => void };
type OutFrame = { frame: Extract<ClientFrame, { type: "publish" }>; waiters: Pending[] };

/** Frames stay well under the 1 MB socket limit. */
const MAX_BATCH_BYTES = 512 * 1024;
const MAX_BATCH_EVENTS = 1000;

type Sub = {
  pattern: string;
  handler: EventHandler;
  next: number;
  started: boolean;
  running: boolean;
  closed: boolean;
};

type LogView = { doc: Y.Doc; segments: LogSegments; subs: Set<Sub> };

export class Events {
  /** Unacknowledged publish frames, in send order (Map keeps insertion order). */
  readonly #outbox = new Map<string, OutFrame>();
  /** Events published this tick, per stream, not yet framed. */
  readonly #queued = new Map<string, { input: EventInput; bytes: number; waiter: Pending }[]>();
  #flushScheduled = false;
  #nextRef = 0;
  readonly #views = new Map<string, LogView>();

  constructor(
    private readonly transport: Transport,
    private readonly docs: DocSync,
    /** Reports handler failures; the subscription carries on with the next event. */
    private readonly onHandlerError: (error: unknown, event: StoredEvent) => void,
  ) {}

  publish(type: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    return new Promise((resolve, reject) => {
      const stream = options.stream ?? "main";
      const checked = this.#check(stream, { ...options, type, data, id: options.id ?? uuidv7() });
      if (checked instanceof CrosstalkError) return reject(checked);
      let queue = this.#queued.get(stream);
      if (!queue) {
        queue = [];
        this.#queued.set(stream, queue);
      }
      queue.push({ ...checked, waiter: { resolve, reject } });
      if (!this.#flushScheduled) {
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
    const stream = options.stream ?? "main";
    const inputs: EventInput[] = [];
    let bytes = 0;
    for (const item of items) {
      const checked = this.#check(stream, {
        ...item.options,
        type: item.type,
        data: item.data,
        id: item.options?.id ?? uuidv7(),
      });
      if (checked instanceof CrosstalkError) return Promise.reject(checked);
      inputs.push(checked.input);
      bytes += checked.bytes;
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

  #check(stream: string, raw: Record<string, unknown>): { input: EventInput; bytes: number } | CrosstalkError {
    if (!nameSchema.safeParse(stream).success)
      return new CrosstalkError("INVALID_ARGUMENT", `invalid stream name ${JSON.stringify(stream)}`);
    const parsed = eventInputSchema.safeParse(raw);
    if (!parsed.success) {
      return new CrosstalkError(
        "INVALID_ARGUMENT",
        `invalid event: ${parsed.error.issues[0]?.message ?? "bad input"}`,
        parsed.error.issues,
      );
    }
    const bytes = JSON.stringify(parsed.data).length;
    if (bytes > MAX_EVENT_BYTES)
      return new CrosstalkError("TOO_LARGE", `event is ${bytes} bytes; the limit is ${MAX_EVENT_BYTES}`);
    return { input: parsed.data, bytes };
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

  #enqueueFrame(stream: string, events: EventInput[], waiters: Pending[]): void {
    const ref = `p${++this.#nextRef}`;
    const out: OutFrame = { frame: { type: "publish", ref, stream, events }, waiters };
    this.#outbox.set(ref, out);
    this.transport.send(out.frame);
  }

  /** On (re)connect: send every unacknowledged frame again, oldest first. */
  resend(): void {
    for (const out of this.#outbox.values()) this.transport.send(out.frame);
  }

  /** Unacknowledged frames, for tests and `team.pending`. */
  get pending(): number {
    return this.#outbox.size;
  }

  ack(ref: string, results: PublishResult[]): void {
    const out = this.#outbox.get(ref);
    if (!out) return;
    this.#outbox.delete(ref);
    out.waiters.forEach((w, i) => {
      const r = results[i];
      if (r) w.resolve(r);
      else w.reject(new CrosstalkError("INTERNAL", "the room acknowledged fewer events than were sent"));
    });
  }

  /** The room refused frame `ref`: nothing in it was appended. */
  refused(ref: string, error: CrosstalkError): boolean {
    const out = this.#outbox.get(ref);
    if (!out) return false;
    this.#outbox.delete(ref);
    for (const w of out.waiters) w.reject(error);
    return true;
  }

  failAll(error: CrosstalkError): void {
    this.#flush();
    for (const out of this.#outbox.values()) for (const w of out.waiters) w.reject(error);
    this.#outbox.clear();
  }

  // -------------------------------------------------------------------------------------
  // Subscribing

  subscribe(pattern: string, handler: EventHandler, options: SubscribeOptions = {}): Subscription {
    const stream = options.stream ?? "main";
    if (!patternSchema.safeParse(pattern).success)
      throw new CrosstalkError("INVALID_ARGUMENT", `invalid pattern ${JSON.stringify(pattern)}`);
    if (!nameSchema.safeParse(stream).success)
      throw new CrosstalkError("INVALID_ARGUMENT", `invalid stream name ${JSON.stringify(stream)}`);
    const view = this.#view(stream);
    const from = options.from ?? "end";
    const sub: Sub = { pattern, handler, next: 1, started: false, running: false, closed: false };
    view.subs.add(sub);
    const ready = this.docs.synced(logDoc(stream)).then(() => {
      if (sub.closed) return;
      sub.next = startSeq(view.segments, from);
      sub.started = true;
      void this.#pump(view, sub);
    });
    return {
      ready,
      get position() {
        return sub.next;
      },
      unsubscribe: () => {
        if (sub.closed) return;
        sub.closed = true;
        view.subs.delete(sub);
        if (view.subs.size === 0) {
          this.#views.delete(stream);
          this.docs.release(logDoc(stream));
        }
      },
    };
  }

  #view(stream: string): LogView {
    let view = this.#views.get(stream);
    if (!view) {
      const doc = this.docs.open(logDoc(stream));
      const created: LogView = { doc, segments: logSegments(doc), subs: new Set() };
      doc.on("afterTransaction", () => {
        for (const sub of created.subs) if (sub.started) void this.#pump(created, sub);
      });
      this.#views.set(stream, created);
      view = created;
    }
    return view;
  }

  /** Delivers events to one subscription in seq order, one handler call at a time. */
  async #pump(view: LogView, sub: Sub): Promise<void> {
    if (sub.running) return;
    sub.running = true;
    try {
      while (!sub.closed) {
        const event = eventAt(view.segments, sub.next);
        if (!event) break;
        sub.next++;
        if (!matchesPattern(sub.pattern, event.type)) continue;
        try {
          await sub.handler(event);
        } catch (error) {
          this.onHandlerError(error, event);
        }
      }
    } finally {
      sub.running = false;
    }
  }
}

/** The first seq a subscription reads, given where the log stands now. */
function startSeq(segments: LogSegments, from: NonNullable<SubscribeOptions["from"]>): number {
  const head = logHead(segments);
  if (from === "end") return head + 1;
  if (from === "start") return logTail(segments);
  if (typeof from === "number") return Math.max(1, Math.floor(from));
  // A Date: room timestamps never decrease along the log, so binary search for the first
  // event at or after it.
  const t = from.getTime();
  let lo = logTail(segments);
  let hi = head + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if ((eventAt(segments, mid)?.ts ?? Number.POSITIVE_INFINITY) < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
