/**
 * The room's metrics, rendered in the Prometheus text format at `GET …/<team>/metrics`.
 *
 * Hand-rolled (counters, gauges and one histogram kind, ~100 lines): prom-client, the usual
 * library, depends on Node's `cluster`/`v8`/`process` and does not run in workerd.
 */

type Labels = Record<string, string>;
/** Callers pass a metric's labels in one fixed order, so the values alone identify the series. */
/** The series key: the label values joined (one label's value is its own key; no array per count). */
const key = (labels: Labels): string => {
  let k: string | undefined;
  for (const name in labels) k = k === undefined ? (labels[name] as string) : `${k}\u0000${labels[name]}`;
  return k ?? "";
};
const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const renderLabels = (labels: Labels, extra: Labels = {}) => {
  const all = { ...labels, ...extra };
  const parts = Object.entries(all).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length > 0 ? `{${parts.join(",")}}` : "";
};

/** The label value that stands for every value past a counter's `maxSeries`. */
export const OTHER = "_other";

class Counter {
  readonly #values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    /**
     * The most series this counter keeps; past it, new label values count under
     * {@link OTHER}. For labels a client chooses (a role it calls), so a caller cannot grow
     * the scrape without bound.
     */
    readonly maxSeries = Number.POSITIVE_INFINITY,
  ) {}

  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    const entry = this.#values.get(k);
    if (entry) entry.value += by;
    else if (this.#values.size < this.maxSeries) this.#values.set(k, { labels, value: by });
    else {
      const other = Object.fromEntries(Object.keys(labels).map((name) => [name, OTHER]));
      const rest = this.#values.get(key(other));
      if (rest) rest.value += by;
      else this.#values.set(key(other), { labels: other, value: by });
    }
  }

  /**
   * `inc({ [label]: value })` for a counter with that one label, without the labels object
   * and its key walk once the series exists: the frame counters count every frame in and out.
   */
  incOne(label: string, value: string): void {
    const entry = this.#values.get(value);
    if (entry) entry.value++;
    else this.inc({ [label]: value });
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.#values.values()) lines.push(`${this.name}${renderLabels(labels)} ${value}`);
    return lines;
  }
}

/** Latency buckets in seconds: 0.5 ms to 30 s. */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

class Histogram {
  readonly #series = new Map<string, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  observe(labels: Labels, seconds: number): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { labels, counts: BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= (BUCKETS[i] as number)) (s.counts[i] as number)++;
    s.sum += seconds;
    s.count++;
  }

  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const s of this.#series.values()) {
      for (const [i, b] of BUCKETS.entries()) {
        lines.push(`${this.name}_bucket${renderLabels(s.labels, { le: String(b) })} ${s.counts[i]}`);
      }
      lines.push(`${this.name}_bucket${renderLabels(s.labels, { le: "+Inf" })} ${s.count}`);
      lines.push(`${this.name}_sum${renderLabels(s.labels)} ${s.sum}`);
      lines.push(`${this.name}_count${renderLabels(s.labels)} ${s.count}`);
    }
    return lines;
  }
}

/** A gauge read at scrape time. */
export type GaugeSample = { labels?: Labels; value: number };
export type Gauge = { name: string; help: string; samples: GaugeSample[] };

export function renderGauge(g: Gauge): string[] {
  const lines = [`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} gauge`];
  for (const s of g.samples) lines.push(`${g.name}${renderLabels(s.labels ?? {})} ${s.value}`);
  return lines;
}

export class Metrics {
  readonly framesIn = new Counter(
    "crosstalk_frames_in_total",
    "Frames received, by frame type (doc = binary Yjs frames).",
  );
  readonly framesOut = new Counter(
    "crosstalk_frames_out_total",
    "Frames sent, by frame type (doc = binary Yjs frames).",
  );
  readonly refused = new Counter("crosstalk_refused_frames_total", "Frames refused with an error, by error code.");
  readonly published = new Counter("crosstalk_events_published_total", "Events appended, by stream.");
  readonly duplicates = new Counter(
    "crosstalk_events_duplicate_total",
    "Publishes answered from the dedupe record, by stream.",
  );
  readonly delivered = new Counter(
    "crosstalk_events_delivered_total",
    "Events sent to subscribers (live log updates and group leases), by stream.",
  );
  readonly calls = new Counter(
    "crosstalk_rpc_calls_total",
    "Calls finished, by method and outcome (ok or error code).",
  );
  readonly callSeconds = new Histogram(
    "crosstalk_rpc_call_duration_seconds",
    "Call latency through the room, by method.",
  );
  readonly sends = new Counter("crosstalk_rpc_messages_total", "Fire-and-forget messages stored, by method.");
  readonly retained = new Counter(
    "crosstalk_retention_removed_events_total",
    "Archived events removed by retention, by stream and reason (age, count, bytes, compacted).",
  );
  readonly retainedBytes = new Counter(
    "crosstalk_retention_removed_bytes_total",
    "Bytes of archived events removed by retention, by stream.",
  );
  readonly rebases = new Counter(
    "crosstalk_doc_rebases_total",
    "State documents rebased onto a fresh copy to shed their history, by document.",
    256,
  );
  readonly unloads = new Counter(
    "crosstalk_doc_unloads_total",
    "Documents unloaded from memory after nobody used them for a while (loaded again on demand), by kind (state, log, ...).",
    64,
  );
  readonly noRoute = new Counter(
    "crosstalk_rpc_no_route_total",
    "Calls and messages to a role refused with NO_ROUTE (no live member serves the method), by role.",
    256,
  );
  readonly connects = new Counter(
    "crosstalk_agent_connects_total",
    "Agent sessions admitted, by agent: a flapping agent reconnects often.",
    4096,
  );
  readonly slowReaders = new Counter(
    "crosstalk_slow_reader_closes_total",
    "Sockets closed with SlowReader (4005): the agent stopped reading and passed its unread budget, by agent.",
    4096,
  );

  render(gauges: Gauge[]): string {
    const counters = [
      this.framesIn,
      this.framesOut,
      this.refused,
      this.published,
      this.duplicates,
      this.delivered,
      this.calls,
      this.sends,
      this.retained,
      this.retainedBytes,
      this.noRoute,
      this.connects,
      this.slowReaders,
      this.rebases,
      this.unloads,
    ];
    return `${[...gauges.flatMap(renderGauge), ...counters.flatMap((c) => c.render()), ...this.callSeconds.render()].join("\n")}\n`;
  }
}
