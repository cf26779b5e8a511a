/**
 * Per-stream retention of the archive: by age, by count, by bytes, and compaction of keyed
 * streams (the latest event per key stays, as in Kafka's compacted topics). The live window
 * (`streams.ts`) already bounds memory; this bounds storage.
 *
 * Configuration: `policy.retention` (`protocol/permissions.ts`), so only an admin sets it
 * (`policy.set` needs `policy.admin`), it is versioned with the policy and travels with a
 * backup. A stream without a rule keeps everything.
 *
 * What a pass removes, and the rule that protects readers:
 * - Only archived segments: the live window is never touched.
 * - Age, count and bytes remove whole archived segments, oldest first: a segment goes when
 *   its newest event is older than `maxAgeMs`, or at least `maxEvents` newer events follow
 *   it, or the archive stores more than `maxBytes`. The stream then starts at `firstSeq`;
 *   reading below it is `EVENTS_REMOVED` with `details.firstSeq`.
 * - Compaction replaces an archived event with a hole when a newer event has its key;
 *   readers skip holes (seqs have gaps), events without a key are kept.
 * - The hold: with `holdForConsumers` (the default), nothing above the slowest durable
 *   consumer, consumer group or projection of the stream (`Consumers.list`, where
 *   projections appear as `projection:<ns>:<name>`) is removed: nothing they have not seen is
 *   lost before they see it. What the hold keeps is reported (`held`). Without it, the rules
 *   apply regardless, and a consumer left behind gets `EVENTS_REMOVED` and resumes from
 *   `firstSeq` (client: `subscribe(..., { skipRemoved: true })`).
 *
 * When: a pass runs after an append to a stream with a rule, at most every `intervalMs`
 * per stream, and on demand (`POST …/<team>/retention/<stream>`). A pass reads the
 * stream's archive index, and the archive itself when `maxBytes` or `compact` needs it.
 *
 * Reported: `crosstalk_retention_removed_events_total{stream,reason}` and
 * `…_bytes_total{stream}`, `GET …/<team>/retention` (per stream: first seq, totals removed,
 * what the hold kept, last pass), and one `retention.removed` event on the audit stream per
 * pass that removed something.
 *
 * Storage: `ret|<stream>` → {@link RetentionReport}.
 */
import { matchesPattern, type RetentionRule, type StoredEvent } from "../protocol/index.ts";
import type { Consumers } from "./consumers.ts";
import type { RoomContext } from "./context.ts";
import { httpError, type RoomModule } from "./handlers.ts";
import { keys, pad } from "./keys.ts";
import type { Metrics } from "./metrics.ts";
import type { KvStorage } from "./storage.ts";
import { ARCHIVE_PART_CHARS, type ArchiveIndex, type StreamState, type Streams } from "./streams.ts";

type Reason = "age" | "count" | "bytes" | "compacted";

/** What retention did to one stream, in total and in its last pass. */
export type RetentionReport = {
  stream: string;
  /** The oldest seq the stream keeps (below it: `EVENTS_REMOVED`). */
  firstSeq: number;
  /** Events removed so far, by reason. */
  removed: Record<Reason, number>;
  removedBytes: number;
  /** Events the last pass would have removed but the hold kept, and the position holding them. */
  held: number;
  heldAt: number | null;
  lastRunAt: number;
  /** What the last pass removed. */
  last: Record<Reason, number>;
};

export type RetentionOptions = {
  /** The shortest time between two automatic passes over one stream. */
  intervalMs: number;
};

const MAX_KEYS_PER_PUT = 128;
const zero = (): Record<Reason, number> => ({ age: 0, count: 0, bytes: 0, compacted: 0 });

/** The rule for `stream`: its own entry, else the first pattern that matches it. */
export function ruleFor(rules: Record<string, RetentionRule> | undefined, stream: string): RetentionRule | undefined {
  if (!rules) return undefined;
  if (Object.hasOwn(rules, stream)) return rules[stream];
  for (const [pattern, rule] of Object.entries(rules)) if (matchesPattern(pattern, stream)) return rule;
  return undefined;
}

export class Retention {
  readonly #lastRun = new Map<string, number>();
  readonly #running = new Map<string, Promise<RetentionReport>>();
  private readonly storage: KvStorage;
  private readonly now: () => number;
  private readonly metrics: Metrics;

  constructor(
    ctx: RoomContext,
    private readonly deps: {
      streams: Streams;
      consumers: Consumers;
      /** The team's retention rules (the policy's `retention`). */
      rules: () => Record<string, RetentionRule> | undefined;
      /** A pass removed something (the room writes it to the audit stream). */
      removed?: (report: RetentionReport) => void;
      options: RetentionOptions;
    },
  ) {
    ({ storage: this.storage, now: this.now, metrics: this.metrics } = ctx);
    deps.streams.appended.add((stream) => this.#appended(stream));
  }

  #appended(stream: StreamState): void {
    if (!ruleFor(this.deps.rules(), stream.name) || this.#running.has(stream.name)) return;
    const last = this.#lastRun.get(stream.name) ?? 0;
    if (this.now() - last < this.deps.options.intervalMs) return;
    this.#lastRun.set(stream.name, this.now());
    void this.run(stream.name).catch((error: unknown) =>
      console.error(`[crosstalk] retention of ${stream.name} failed`, error),
    );
  }

  /** One pass over `name` now (joins a pass already running); null when the stream has no rule. */
  async run(name: string): Promise<RetentionReport | null> {
    const rule = ruleFor(this.deps.rules(), name);
    if (!rule) return null;
    const running = this.#running.get(name);
    if (running) return running;
    const pass = this.#pass(name, rule).finally(() => this.#running.delete(name));
    this.#running.set(name, pass);
    return pass;
  }

  /** Every stream retention has worked on. */
  async reports(): Promise<RetentionReport[]> {
    const stored = await this.storage.list<RetentionReport>({ prefix: keys.retentionPrefix });
    return [...stored.values()];
  }

  /** The lowest position a consumer, group or projection of `name` has acknowledged (Infinity: none). */
  async #hold(name: string): Promise<number> {
    const { consumers } = await this.deps.consumers.list(name);
    return consumers.reduce((min, c) => Math.min(min, c.acked), Number.POSITIVE_INFINITY);
  }

  async #pass(name: string, rule: RetentionRule): Promise<RetentionReport> {
    const stream = await this.deps.streams.open(name);
    const now = this.now();
    const hold = rule.holdForConsumers === false ? Number.POSITIVE_INFINITY : await this.#hold(name);
    const idxPrefix = keys.archiveIndexPrefix(name);
    const index = await this.storage.list<ArchiveIndex>({ prefix: idxPrefix });
    const segments = [...index].map(([key, idx]) => ({ segNo: Number(key.slice(idxPrefix.length)), idx }));
    const needText = rule.maxBytes !== undefined || rule.compact === true;
    const texts = new Map<number, string[]>();
    if (needText) {
      for (const { segNo } of segments) {
        const parts = await this.storage.list<string>({ prefix: keys.archivePrefix(name, segNo) });
        texts.set(segNo, [...parts.values()]);
      }
    }
    const size = (segNo: number) => (texts.get(segNo) ?? []).reduce((n, p) => n + p.length, 0);
    let bytes = needText ? segments.reduce((n, s) => n + size(s.segNo), 0) : 0;
    const last = zero();
    let removedBytes = 0;
    let held = 0;
    let heldAt: number | null = null;

    // Whole segments, oldest first; each rule only ever frees a prefix of the archive.
    let kept = 0;
    for (const { segNo, idx } of segments) {
      const [first, lastSeq] = idx.seqs;
      const reason: Reason | null =
        rule.maxAgeMs !== undefined && idx.lastTs < now - rule.maxAgeMs
          ? "age"
          : rule.maxEvents !== undefined && stream.head - lastSeq >= rule.maxEvents
            ? "count"
            : rule.maxBytes !== undefined && bytes > rule.maxBytes
              ? "bytes"
              : null;
      if (!reason) break;
      if (lastSeq > hold) {
        // Held: count what would go (this segment and the next ones the rule also frees).
        held = lastSeq - Math.max(first - 1, hold);
        heldAt = hold;
        break;
      }
      // The index first: once it is gone the stream starts after this segment, so a crash
      // between the two deletes leaves unreachable parts, never a dangling index.
      await this.storage.delete([idxPrefix + pad(segNo)]);
      const partKeys = [...(await this.storage.list({ prefix: keys.archivePrefix(name, segNo) })).keys()];
      for (let i = 0; i < partKeys.length; i += MAX_KEYS_PER_PUT)
        await this.storage.delete(partKeys.slice(i, i + MAX_KEYS_PER_PUT));
      const n = lastSeq - first + 1;
      last[reason] += n;
      const freed = size(segNo);
      bytes -= freed;
      removedBytes += freed;
      kept++;
    }
    const remaining = segments.slice(kept);

    if (rule.compact) {
      const compacted = await this.#compact(stream, remaining, texts, hold);
      last.compacted += compacted.events;
      removedBytes += compacted.bytes;
    }
    this.deps.streams.forget(name);

    const previous = await this.storage.get<RetentionReport>(keys.retention(name));
    const removed = previous?.removed ?? zero();
    for (const r of Object.keys(last) as Reason[]) {
      removed[r] += last[r];
      if (last[r] > 0) this.metrics.retained.inc({ stream: name, reason: r }, last[r]);
    }
    if (removedBytes > 0) this.metrics.retainedBytes.inc({ stream: name }, removedBytes);
    const report: RetentionReport = {
      stream: name,
      firstSeq: await this.deps.streams.firstKept(name),
      removed,
      removedBytes: (previous?.removedBytes ?? 0) + removedBytes,
      held,
      heldAt,
      lastRunAt: now,
      last,
    };
    await this.storage.put({ [keys.retention(name)]: report });
    if (Object.values(last).some((n) => n > 0)) this.deps.removed?.(report);
    return report;
  }

  /**
   * Replaces every archived event at or below `hold` whose key has a newer event with a hole
   * (`null`), newest segment first. A segment is rewritten in one put (atomic) when its parts
   * fit one (≤ 128 parts, ~5 MB of JSON); a larger one is left as it is.
   */
  async #compact(
    stream: StreamState,
    segments: { segNo: number; idx: ArchiveIndex }[],
    texts: Map<number, string[]>,
    hold: number,
  ): Promise<{ events: number; bytes: number }> {
    const seen = new Set<string>();
    // The live window's keys are the newest.
    for (const segment of stream.segments.values())
      for (const event of segment.toArray()) if (event?.key !== undefined) seen.add(event.key);
    let removed = 0;
    let bytes = 0;
    for (const { segNo } of [...segments].reverse()) {
      const parts = texts.get(segNo) ?? [];
      if (parts.length === 0) continue;
      const events = JSON.parse(parts.join("")) as (StoredEvent | null)[];
      let changed = false;
      for (let i = events.length - 1; i >= 0; i--) {
        const event = events[i];
        if (!event || event.key === undefined) continue;
        if (!seen.has(event.key)) {
          seen.add(event.key);
          continue;
        }
        if (event.seq > hold) continue;
        events[i] = null;
        changed = true;
        removed++;
        bytes += JSON.stringify(event).length;
      }
      if (!changed) continue;
      const text = JSON.stringify(events);
      const entries: Record<string, string> = {};
      const count = Math.max(parts.length, Math.ceil(text.length / ARCHIVE_PART_CHARS));
      if (count > MAX_KEYS_PER_PUT) continue;
      // At least as many parts as before: trailing ones are written empty, so joining every
      // part under the prefix still yields exactly the new text.
      for (let part = 0; part < count; part++) {
        entries[keys.archivePrefix(stream.name, segNo) + pad(part)] = text.slice(
          part * ARCHIVE_PART_CHARS,
          (part + 1) * ARCHIVE_PART_CHARS,
        );
      }
      await this.storage.put(entries);
    }
    return { events: removed, bytes };
  }
}

/**
 * `GET …/<team>/retention`: every stream's report and the rules; `POST …/retention/<stream>`:
 * a pass now. Both need `policy.admin` (`policy.ts`).
 */
export const retentionModule = (retention: Retention): RoomModule => ({
  frames: {},
  routes: [
    { path: "retention", handle: async () => Response.json({ streams: await retention.reports() }) },
    {
      path: "retention/:stream",
      methods: ["POST"],
      handle: async (params) => {
        const report = await retention.run(params.stream as string);
        if (!report)
          return httpError(404, { code: "NOT_FOUND", message: `stream ${params.stream} has no retention rule` });
        return Response.json(report);
      },
    },
  ],
});
