/**
 * `crosstalk/otel`: an agent's part of its team's causal chains as OpenTelemetry spans,
 * exported with the OpenTelemetry JS SDK (`@opentelemetry/sdk-trace-base`, OTLP/HTTP by
 * `@opentelemetry/exporter-trace-otlp-http`, both optional peer dependencies). Node only:
 * `AsyncLocalStorage` carries the span a handler runs in to what it publishes, calls and
 * sends. Never imported by the isomorphic core.
 *
 *   const otel = instrument(team, { url: "http://collector:4318/v1/traces" });
 *   // … on shutdown: await otel.shutdown();
 *
 * Spans, all in the trace of the work's correlation id (`traceIdOf`):
 * - `publish <type>` (PRODUCER), `call <method>` (CLIENT), `send <method>` (PRODUCER): the
 *   item's own span; its id is the one in the item's `traceparent`, so every hop that item
 *   makes (the room's span, `CROSSTALK_OTLP_ENDPOINT`; the handlers') is its child. Its
 *   parent is the handler span it was made in, if any.
 * - `consume <type>` (CONSUMER), `handle <method>` (SERVER): one per handler run, a child of
 *   the span in the handled item's `traceparent`.
 *
 * A call made without a correlation id gets a fresh one (its trace id is derived from it).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { ROOT_CONTEXT, type Span, type SpanContext, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type IdGenerator,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { newSpanId, traceIdOf, uuidv7 } from "../protocol/index.ts";
import type { Team } from "./team.ts";

export type OtelOptions = {
  /** The OTLP/HTTP traces endpoint (default: the exporter's, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or localhost:4318). */
  url?: string;
  /** Another exporter instead (any SDK `SpanExporter`). */
  exporter?: SpanExporter;
  /** `service.name` of the spans (default: the agent id). */
  serviceName?: string;
};

export type Instrumented = {
  /** Exports every span ended so far. */
  flush(): Promise<void>;
  /** Flushes and stops exporting; the team keeps working, untraced. */
  shutdown(): Promise<void>;
};

/**
 * The SDK makes span and trace ids with an `IdGenerator`; an item's span must have the id its
 * `traceparent` already carries on the wire, so the next ids are set just before a span starts
 * (synchronously: nothing runs in between).
 */
class ItemIds implements IdGenerator {
  next: { traceId?: string | undefined; spanId?: string | undefined } = {};
  generateTraceId(): string {
    const id = this.next.traceId ?? traceIdOf(uuidv7());
    this.next.traceId = undefined;
    return id;
  }
  generateSpanId(): string {
    const id = this.next.spanId ?? newSpanId();
    this.next.spanId = undefined;
    return id;
  }
}

/** The span context a `traceparent` names, as a remote parent. */
function parentOf(traceparent: string | undefined): SpanContext | undefined {
  const [, traceId, spanId, flags] = traceparent?.split("-") ?? [];
  if (!traceId || !spanId) return undefined;
  return { traceId, spanId, traceFlags: Number.parseInt(flags ?? "01", 16), isRemote: true };
}

const failed = (span: Span, error: unknown) => {
  const code = (error as { code?: unknown })?.code;
  span.setStatus({ code: SpanStatusCode.ERROR, message: typeof code === "string" ? code : String(error) });
};

/** Traces `team`: its publishes, calls and sends, and its event, call and message handlers. */
export function instrument(team: Team, options: OtelOptions = {}): Instrumented {
  const ids = new ItemIds();
  const exporter = options.exporter ?? new OTLPTraceExporter(options.url ? { url: options.url } : {});
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": options.serviceName ?? team.agent }),
    idGenerator: ids,
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500 })],
  });
  const tracer = provider.getTracer("crosstalk");
  /** The handler span the current code runs in. */
  const current = new AsyncLocalStorage<Span>();
  const attributes = { "crosstalk.agent": team.agent };

  const start = (name: string, kind: SpanKind, correlationId: string, parent?: SpanContext, spanId?: string) => {
    ids.next = { traceId: traceIdOf(correlationId), spanId };
    const ctx = parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
    return tracer.startSpan(
      name,
      { kind, attributes: { ...attributes, "crosstalk.correlation_id": correlationId } },
      ctx,
    );
  };

  /** An item this agent sends: its span (the id in its traceparent) lasts until the room acknowledges or answers. */
  const outgoing = <T>(
    name: string,
    kind: SpanKind,
    correlationId: string,
    send: (traceparent: string) => Promise<T>,
  ): Promise<T> => {
    const traceId = traceIdOf(correlationId);
    const spanId = newSpanId();
    const inside = current.getStore()?.spanContext();
    const span = start(name, kind, correlationId, inside?.traceId === traceId ? inside : undefined, spanId);
    return send(`00-${traceId}-${spanId}-01`).then(
      (value) => {
        span.end();
        return value;
      },
      (error: unknown) => {
        failed(span, error);
        span.end();
        throw error;
      },
    );
  };

  /** A handler run: a child of the handled item's span, current while the handler runs. */
  const incoming = async <T>(
    name: string,
    kind: SpanKind,
    correlationId: string,
    traceparent: string | undefined,
    run: () => T,
  ): Promise<Awaited<T>> => {
    const span = start(name, kind, correlationId, parentOf(traceparent));
    try {
      return await current.run(span, run);
    } catch (error) {
      failed(span, error);
      throw error;
    } finally {
      span.end();
    }
  };

  const publish = team.publish.bind(team);
  const call = team.call.bind(team);
  const send = team.send.bind(team);
  const subscribe = team.subscribe.bind(team);
  const handle = team.handle.bind(team);
  Object.assign(team, {
    publish: (type: string, data: unknown, opts: Parameters<Team["publish"]>[2] = {}) => {
      if (opts.traceparent) return publish(type, data, opts);
      const id = opts.id ?? uuidv7();
      const correlationId = opts.correlationId ?? id;
      return outgoing(`publish ${type}`, SpanKind.PRODUCER, correlationId, (traceparent) =>
        publish(type, data, { ...opts, id, correlationId, traceparent }),
      );
    },
    call: (
      to: Parameters<Team["call"]>[0],
      method: string,
      input?: unknown,
      opts: Parameters<Team["call"]>[3] = {},
    ) => {
      if (opts.traceparent) return call(to, method, input, opts);
      const correlationId = opts.correlationId ?? uuidv7();
      return outgoing(`call ${method}`, SpanKind.CLIENT, correlationId, (traceparent) =>
        call(to, method, input, { ...opts, correlationId, traceparent }),
      );
    },
    send: (
      to: Parameters<Team["send"]>[0],
      method: string,
      input?: unknown,
      opts: Parameters<Team["send"]>[3] = {},
    ) => {
      if (opts.traceparent) return send(to, method, input, opts);
      const id = opts.id ?? uuidv7();
      const correlationId = opts.correlationId ?? id;
      return outgoing(`send ${method}`, SpanKind.PRODUCER, correlationId, (traceparent) =>
        send(to, method, input, { ...opts, id, correlationId, traceparent }),
      );
    },
    subscribe: (pattern: string, handler: Parameters<Team["subscribe"]>[1], opts?: Parameters<Team["subscribe"]>[2]) =>
      subscribe(
        pattern,
        (event) =>
          incoming(`consume ${event.type}`, SpanKind.CONSUMER, event.correlationId ?? event.id, event.traceparent, () =>
            handler(event),
          ),
        opts,
      ),
    handle: (method: string, handler: Parameters<Team["handle"]>[1], info?: Parameters<Team["handle"]>[2]) =>
      handle(
        method,
        (input, ctx) =>
          incoming(`handle ${method}`, SpanKind.SERVER, ctx.correlationId ?? ctx.callId ?? "", ctx.traceparent, () =>
            handler(input, ctx),
          ),
        info,
      ),
  });
  return {
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}
