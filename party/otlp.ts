/**
 * The room's hop as OpenTelemetry spans: an event's append, a call's routing (routed to
 * answered) and a message's storage, each a child of the span its `traceparent` names (the
 * publisher's, caller's or sender's), exported as OTLP/HTTP JSON to
 * `CROSSTALK_OTLP_ENDPOINT` (`…/v1/traces`). Off unless that variable is set.
 *
 * Hand-rolled on `fetch` (~80 lines) rather than the OpenTelemetry JS SDK: its exporters and
 * context managers lean on Node APIs and timers the room's host (workerd) does not promise,
 * and the room needs no tracer, context or sampler: only finished spans of a known shape.
 * Agents in Node use the SDK itself (`crosstalk/otel`).
 */
import { newSpanId } from "../protocol/index.ts";

export type RoomSpan = {
  name: string;
  /** The `traceparent` of the item this hop handled: the parent of the room's span. */
  parent: string;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number>;
  /** An error code when the hop failed (a call answered with an error). */
  error?: string;
};

type OtlpValue = { stringValue: string } | { intValue: string };
type OtlpSpan = {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: OtlpValue }[];
  status: { code: number; message?: string };
};

/** OTLP's SPAN_KIND_SERVER: the room serves each item it is handed. */
const KIND_SERVER = 2;
const STATUS_OK = 1;
const STATUS_ERROR = 2;
/** Spans per export. */
const BATCH = 256;
/** Exports waiting on a slow or hung endpoint; past this many a batch is dropped, not queued. */
const MAX_PENDING = 4;

const nanos = (ms: number) => `${BigInt(Math.round(ms * 1000)) * 1000n}`;
const value = (v: string | number): OtlpValue =>
  typeof v === "number" && Number.isInteger(v) ? { intValue: String(v) } : { stringValue: String(v) };

export class OtlpExport {
  readonly #url: string;
  #buffer: OtlpSpan[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #sending: Promise<void> = Promise.resolve();
  #pending = 0;

  constructor(
    endpoint: string,
    private readonly options: { service: string; team: string; flushMs?: number; fetch?: typeof fetch },
  ) {
    this.#url = `${endpoint.replace(/\/+$/, "")}/v1/traces`;
  }

  /** Records one finished hop. Cheap: a parse and a push; the export is batched. */
  add(span: RoomSpan): void {
    const [, traceId, parentSpanId] = span.parent.split("-");
    if (!traceId || !parentSpanId) return;
    this.#buffer.push({
      traceId,
      spanId: newSpanId(),
      parentSpanId,
      name: span.name,
      kind: KIND_SERVER,
      startTimeUnixNano: nanos(span.startMs),
      endTimeUnixNano: nanos(span.endMs),
      attributes: Object.entries({ ...span.attributes, "crosstalk.team": this.options.team }).map(([key, v]) => ({
        key,
        value: value(v),
      })),
      status: span.error ? { code: STATUS_ERROR, message: span.error } : { code: STATUS_OK },
    });
    if (this.#buffer.length >= BATCH) void this.flush();
    else this.#timer ??= setTimeout(() => void this.flush(), this.options.flushMs ?? 1000);
  }

  /** Sends what is buffered; a failed export is logged and dropped (tracing never blocks the room). */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const spans = this.#buffer;
    this.#buffer = [];
    if (spans.length === 0) return this.#sending;
    if (this.#pending >= MAX_PENDING) {
      console.warn(`[crosstalk] OTLP endpoint ${this.#url} is not keeping up: ${spans.length} spans dropped`);
      return this.#sending;
    }
    this.#pending++;
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: "service.name", value: { stringValue: this.options.service } }] },
          scopeSpans: [{ scope: { name: "crosstalk-room" }, spans }],
        },
      ],
    };
    const send = this.options.fetch ?? fetch;
    this.#sending = this.#sending.then(() =>
      send(this.#url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        // A hung endpoint holds one of MAX_PENDING slots for at most this long.
        signal: AbortSignal.timeout(10_000),
      })
        .then(async (res) => {
          await res.arrayBuffer().catch(() => {});
          if (!res.ok) console.warn(`[crosstalk] OTLP export to ${this.#url}: HTTP ${res.status}`);
        })
        .catch((error: unknown) => console.warn(`[crosstalk] OTLP export to ${this.#url} failed`, error))
        .finally(() => {
          this.#pending--;
        }),
    );
    return this.#sending;
  }
}
