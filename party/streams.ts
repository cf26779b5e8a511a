/**
 * Stream sequencing and history. The room is the only writer of `log/<stream>` documents:
 * a publish is validated, deduplicated by event id, stamped (`seq`, `ts`, `source`),
 * appended in one transaction, and acknowledged once the commit queue has stored it.
 *
 * Bounded live window: the log document keeps about `window` recent events. Whole segments
 * older than that are written to immutable archive records and then deleted from the
 * document (Yjs GC drops their content), so the document a joining agent syncs stays the
 * same size however long the history grows. The archive is whatever lies below the
 * document's first segment, so a crash between the two steps only leaves an overlap.
 *
 * A segment's archive text is drafted ahead, a few events with each append, once the segment
 * is full and close to leaving the window (`#draftArchive`): encoding its 1,024 events at
 * once stalled the room for milliseconds at every archive, a latency spike for every
 * subscriber about once a second under a steady 1,000 events/s. The draft is text only, in
 * memory (at most {@link DRAFT_MAX_CHARS} for all streams together: a stream that stops
 * mid-draft keeps its draft while it stays loaded); storage sees the same archive records,
 * written at the same moment, as without it.
 *
 * Storage:
 * - `arc|<stream>|<segment>|<part>` → JSON text of the segment's events, split in parts
 * - `arcidx|<stream>|<segment>` → {@link ArchiveIndex}: the segment's event ids and last
 *   timestamp, loaded at start to rebuild the dedupe window without reading events.
 */
import type * as Y from "yjs";
import {
  type ClientFrame,
  CrosstalkError,
  type ErrorBody,
  type EventInput,
  entryIdTs,
  eventAt,
  LOG_SEGMENT_SIZE,
  type LogEntry,
  type LogSegments,
  logDoc,
  logHead,
  logSegments,
  logTail,
  MAX_EVENT_BYTES,
  MAX_HISTORY_PAGE,
  nameSchema,
  type StoredEvent,
  segmentOf,
  storedEvent,
} from "../protocol/index.ts";
import type { RoomContext } from "./context.ts";
import { ArchivedIds, idHash } from "./dedupe.ts";
import { type DocHub, type HubDoc, ROOM } from "./docs.ts";
import { httpError, type Outcome, type RoomModule } from "./handlers.ts";
import { keys, pad } from "./keys.ts";
import { appendEvents } from "./log.ts";
import { OutboxMarks } from "./marks.ts";
import type { Metrics } from "./metrics.ts";
import type { OtlpExport } from "./otlp.ts";
import { canReadEvent, canReadStream, type Principal } from "./policy.ts";
import type { Session } from "./session.ts";
import { type KvStorage, putAll } from "./storage.ts";

export type StreamOptions = {
  /** Events the live document keeps (rounded up to whole segments). */
  window: number;
  /** How long a published id is remembered for dedupe. */
  dedupeWindowMs: number;
  /** At most this many ids are remembered per stream (the newest). */
  dedupeMaxIds: number;
};

export type StreamState = {
  readonly name: string;
  readonly doc: HubDoc;
  readonly segments: LogSegments;
  head: number;
  lastTs: number;
  /**
   * Event id → where it was stored, for idempotent re-publish: the ids of the live window and
   * of recent appends, and archived ones a publish recalled (`recall`).
   */
  readonly ids: Map<string, { seq: number; ts: number }>;
  /** The other ids remembered for dedupe, of archived events: hashes only (`dedupe.ts`). */
  readonly archived: ArchivedIds;
  archiving: boolean;
  /** The next segment's archive, drafted ahead (`#draftArchive`); null when none is under way. */
  draft: ArchiveDraft | null;
  /** Called after every append, synchronously (consumer groups hook in here). */
  readonly listeners: Set<(stream: StreamState) => void>;
  /**
   * The highest outbox entry applied per sender instance, loaded on first use; the most
   * recent instances of each agent only (`marks.ts`). Every frame with an `outbox` waits for
   * its mark, so frames keep their order.
   */
  readonly marks: OutboxMarks<{ n: number }>;
};

export type ArchiveIndex = { ids: string[]; seqs: [number, number]; lastTs: number };
/**
 * Segment `segNo`'s archive so far: the JSON text of its first `json.length` events, their
 * ids, and the last one's timestamp. The archive is `[json.join(",")]`, exactly the
 * `JSON.stringify` of the whole segment's events.
 */
export type ArchiveDraft = { segNo: number; json: string[]; ids: string[]; lastTs: number; chars: number };
const emptyDraft = (segNo: number): ArchiveDraft => ({ segNo, json: [], ids: [], lastTs: 0, chars: 0 });
/** What a stream's load keeps of an archive index: its ids' hashes (`dedupe.ts`). */
type IndexHashes = { segNo: number; lastTs: number; hashes: Uint32Array };
type PublishFrame = Extract<ClientFrame, { type: "publish" }>;
export type Ack = { id: string; seq: number; ts: number; duplicate: boolean };

const arcPrefix = keys.archivePrefix;
const idxPrefix = keys.archiveIndexPrefix;
/** Archive parts are JSON text; 40k UTF-16 units stay under 128 KiB however they serialize. */
export const ARCHIVE_PART_CHARS = 40_000;
/** Archive segments kept in memory after a read, at most… */
export const ARCHIVE_CACHE_SEGMENTS = 8;
/** …and at most this much of their JSON text together (the segment just read always stays). */
export const ARCHIVE_CACHE_CHARS = 4 * 1024 * 1024;

/** Archive indexes read at a time when a stream loads (its dedupe window). */
const INDEX_PAGE = 8;

/**
 * Drafting starts once the segment is full and at most this many appends from its archive,
 * and drafts {@link DRAFT_PER_EVENT} events per event appended (at least that many per
 * append): done halfway, whatever the batch sizes.
 */
const DRAFT_AHEAD = LOG_SEGMENT_SIZE;
const DRAFT_PER_EVENT = 2;
/**
 * Drafts of all streams together hold at most this much JSON text (UTF-16 units); past it,
 * the archive encodes the rest when it runs, as it did all of it before drafts.
 */
export const DRAFT_MAX_CHARS = 1024 * 1024;

/** A batch this large is committed when its frame is handled, not at the next tick (`DocHub.commitSoon`). */
const COMMIT_SOON_EVENTS = 256;

function eventBytes(event: EventInput): number {
  const json = JSON.stringify(event);
  // Length in UTF-16 units is a cheap bound; count bytes only near the limit.
  return json.length * 3 <= MAX_EVENT_BYTES ? json.length : new TextEncoder().encode(json).byteLength;
}

export class Streams {
  readonly #streams = new Map<string, Promise<StreamState>>();
  /** The loaded ones, by their log document: what goes when the hub unloads it (`doc-cache.ts`). */
  readonly #byDoc = new Map<HubDoc, StreamState>();
  /** The head of each stream unloaded since its last use: metrics and listings read it without a reload. */
  readonly #unloadedHeads = new Map<string, number>();
  /**
   * A few recently read archive segments: consumers catching up read them in sequence. At
   * most {@link ARCHIVE_CACHE_SEGMENTS} and {@link ARCHIVE_CACHE_CHARS} of their JSON text
   * (large events make few segments fit); the oldest read goes first.
   */
  readonly #archiveCache = new Map<string, { events: (StoredEvent | null)[]; chars: number }>();
  #archiveCacheChars = 0;
  /** JSON text the streams' archive drafts hold together (`DRAFT_MAX_CHARS`). */
  #draftChars = 0;
  /** Called after every append to any stream (retention schedules its passes here). */
  readonly appended = new Set<(stream: StreamState) => void>();

  private readonly hub: DocHub;
  private readonly storage: KvStorage;
  private readonly now: () => number;
  private readonly metrics: Metrics;
  private readonly spans: OtlpExport | undefined;

  constructor(
    ctx: RoomContext,
    private readonly options: StreamOptions,
  ) {
    ({ hub: this.hub, storage: this.storage, now: this.now, metrics: this.metrics, spans: this.spans } = ctx);
    // A stream stays in memory while feeds or groups follow it or its archiving runs; else its
    // state (window, dedupe ids, outbox marks) goes with its document and is rebuilt on the next use.
    this.hub.idle?.holds.add((doc) => {
      const stream = this.#byDoc.get(doc);
      return !!stream && (stream.listeners.size > 0 || stream.archiving);
    });
    this.hub.idle?.unloaded.add((doc) => {
      const stream = this.#byDoc.get(doc);
      if (!stream) return;
      this.#byDoc.delete(doc);
      this.#streams.delete(stream.name);
      this.#dropDraft(stream);
      this.#unloadedHeads.set(stream.name, stream.head);
    });
  }

  /** Every stream that has events. */
  async names(): Promise<string[]> {
    const listed = await this.storage.list({ prefix: keys.streamPrefix });
    return [...listed.keys()].map((k) => k.slice(keys.streamPrefix.length));
  }

  /** Every stream used since the room started, with its head, whether it is in memory now or not. */
  async summaries(): Promise<{ name: string; head: number }[]> {
    const settled = await Promise.allSettled(this.#streams.values());
    const loaded = settled.flatMap((s) =>
      s.status === "fulfilled" ? [{ name: s.value.name, head: s.value.head }] : [],
    );
    const names = new Set(loaded.map((s) => s.name));
    const unloaded = [...this.#unloadedHeads].filter(([name]) => !names.has(name));
    return [...loaded, ...unloaded.map(([name, head]) => ({ name, head }))];
  }

  /** The head of `name`, without counting as a use (and without a reload, if it was unloaded). */
  async head(name: string): Promise<number> {
    const loaded = this.#streams.get(name);
    if (loaded) return (await loaded).head;
    return this.#unloadedHeads.get(name) ?? (await this.open(name)).head;
  }

  open(name: string): Promise<StreamState> {
    const stream = this.#streams.get(name);
    if (!stream) {
      const loading = this.#load(name);
      loading.then(
        (state) => {
          this.#byDoc.set(state.doc, state);
          this.#unloadedHeads.delete(name);
        },
        () => this.#streams.delete(name),
      );
      this.#streams.set(name, loading);
      return loading;
    }
    return stream.then((state) => {
      // In use: its document stays loaded a while longer.
      this.hub.idle?.touch(state.doc);
      return state;
    });
  }

  async #load(name: string): Promise<StreamState> {
    const doc = await this.hub.open(logDoc(name));
    const segments = logSegments(doc.ydoc);
    const state: StreamState = {
      name,
      doc,
      segments,
      head: logHead(segments),
      lastTs: 0,
      ids: new Map(),
      archived: new ArchivedIds(),
      archiving: false,
      draft: null,
      listeners: new Set(),
      marks: new OutboxMarks({
        storage: this.storage,
        prefix: (agent) => keys.outboxStream(agent, name, ""),
        make: (n) => ({ n }),
      }),
    };
    // Dedupe window: ids of recent archived segments, then the live ones, oldest first. The
    // indexes are read a few at a time, newest first, and only their ids' hashes are kept until
    // all are read: a 1M-event stream's 98 indexes hold 100,000 id strings, which all at once
    // survived into the old generation and grew the room's heap for good.
    const horizon = this.now() - this.options.dedupeWindowMs;
    const recent: IndexHashes[] = [];
    let wanted = Math.ceil(this.options.dedupeMaxIds / LOG_SEGMENT_SIZE);
    let end: string | undefined;
    while (wanted > 0) {
      const page = await this.#indexHashes(name, Math.min(wanted, INDEX_PAGE), end);
      for (const idx of page.indexes) {
        if (idx.lastTs < horizon) continue;
        recent.push(idx);
        state.lastTs = Math.max(state.lastTs, idx.lastTs);
      }
      end = page.end;
      wanted -= page.read;
      if (page.read < INDEX_PAGE) break;
    }
    for (const { segNo, hashes } of recent.reverse()) state.archived.addSegment(segNo, hashes);
    // The live ones, read straight from their entries (`storedEvent` would build every event).
    const live = [...segments.keys()].map(Number).sort((a, b) => a - b);
    for (const segNo of live) {
      segments.get(String(segNo))?.forEach((entry, i) => {
        const { id, ts } = entryIdTs(entry);
        state.ids.set(id, { seq: segNo * LOG_SEGMENT_SIZE + i + 1, ts });
        state.lastTs = ts;
      });
    }
    this.#trimIds(state);
    return state;
  }

  /**
   * Up to `limit` archive indexes of `name` before key `end`, newest first, as their ids'
   * hashes. The indexes themselves (1,024 id strings each) are garbage once this returns, not
   * held by the caller across its next read, where they would survive a collection or two
   * and be copied into the old generation for nothing.
   */
  async #indexHashes(
    name: string,
    limit: number,
    end: string | undefined,
  ): Promise<{ indexes: IndexHashes[]; read: number; end: string | undefined }> {
    const page = await this.storage.list<ArchiveIndex>({
      prefix: idxPrefix(name),
      reverse: true,
      limit,
      ...(end !== undefined ? { end } : {}),
    });
    const indexes: IndexHashes[] = [];
    let last = end;
    for (const [key, idx] of page) {
      last = key;
      const segNo = segmentOf(idx.seqs[0]);
      indexes.push({ segNo, lastTs: idx.lastTs, hashes: Uint32Array.from(idx.ids, idHash) });
    }
    return { indexes, read: page.size, end: last };
  }

  /** A publish frame: refused, or acknowledged (`publish.ack`) once the batch is stored. */
  async publish(session: Session, frame: PublishFrame, frameChars: number): Promise<Outcome<"publish">> {
    // No event can exceed the limit when the whole frame is within it (UTF-8 ≤ 3 bytes per
    // UTF-16 unit): only then are events measured one by one.
    for (const event of frameChars * 3 <= MAX_EVENT_BYTES ? [] : frame.events) {
      if (eventBytes(event) > MAX_EVENT_BYTES) {
        return {
          error: {
            code: "TOO_LARGE",
            message: `event ${event.id} is larger than ${MAX_EVENT_BYTES} bytes; nothing in this batch was appended`,
          },
        };
      }
    }
    const startedAt = this.spans ? this.now() : 0;
    const stream = await this.open(frame.stream);
    const mark = frame.outbox ? await this.#mark(stream, session.agent, frame.outbox.instance) : null;
    await this.recall(stream, frame.events);
    if (frame.outbox && mark && frame.outbox.n <= mark.n) {
      // Applied before (however long ago): the same answer, with the seqs the room still remembers.
      const results = frame.events.map((e) => {
        const known = stream.ids.get(e.id);
        return known
          ? { id: e.id, seq: known.seq, ts: known.ts, duplicate: true }
          : { id: e.id, seq: 0, ts: 0, duplicate: true };
      });
      this.metrics.duplicates.inc({ stream: stream.name }, results.length);
      return { later: this.hub.stored(stream.doc).then(() => ({ reply: { results } })) };
    }
    const result = this.append(stream, frame.events, session.agent, frame.expectedLastSeq);
    if (!result.ok) return { error: result.error };
    if (frame.outbox && mark) {
      // Stored in the same commit as the events: both or neither survive a crash.
      mark.n = frame.outbox.n;
      this.hub.addToCommit(stream.doc, {
        [keys.outboxStream(session.agent, stream.name, frame.outbox.instance)]: mark.n,
      });
    }
    return {
      later: this.hub.stored(stream.doc).then(() => {
        if (this.spans) this.#spans(stream.name, frame.events, result.results, startedAt);
        return { reply: { results: result.results } };
      }),
    };
  }

  /** The room's hop of each event (received to stored), for OpenTelemetry (`otlp.ts`). */
  #spans(stream: string, events: EventInput[], results: Ack[], startMs: number): void {
    const endMs = this.now();
    for (const [i, e] of events.entries()) {
      const ack = results[i];
      if (!e.traceparent || !ack || ack.duplicate) continue;
      const attributes = { "crosstalk.stream": stream, "crosstalk.seq": ack.seq, "crosstalk.event.id": e.id };
      this.spans?.add({ name: `append ${e.type}`, parent: e.traceparent, startMs, endMs, attributes });
    }
  }

  #mark(stream: StreamState, agent: string, instance: string): Promise<{ n: number }> {
    return stream.marks.get(agent, instance);
  }

  /**
   * Appends a validated batch atomically (one transaction, contiguous seqs). Synchronous, so
   * nothing interleaves between the dedupe check and the append.
   */
  append(
    stream: StreamState,
    events: EventInput[],
    source: string,
    expectedLastSeq?: number,
  ): { ok: true; results: Ack[] } | { ok: false; error: ErrorBody } {
    const results: Ack[] = [];
    const fresh: StoredEvent[] = [];
    const ts = Math.max(this.now(), stream.lastTs);
    const batchIds = new Map<string, Ack>();
    for (const input of events) {
      const known = stream.ids.get(input.id) ?? batchIds.get(input.id);
      if (known) {
        results.push({ id: input.id, seq: known.seq, ts: known.ts, duplicate: true });
        continue;
      }
      const seq = stream.head + fresh.length + 1;
      const event: StoredEvent = { ...input, stream: stream.name, seq, ts, source };
      const ack = { id: input.id, seq, ts, duplicate: false };
      batchIds.set(input.id, ack);
      fresh.push(event);
      results.push(ack);
    }
    // A retried conditional publish whose events are all stored already is not a conflict.
    if (fresh.length > 0 && expectedLastSeq !== undefined && expectedLastSeq !== stream.head) {
      return {
        ok: false,
        error: {
          code: "CONFLICT",
          message: `stream ${stream.name} is at seq ${stream.head}, not ${expectedLastSeq}; nothing was appended`,
          details: { lastSeq: stream.head },
        },
      };
    }
    if (results.length > fresh.length)
      this.metrics.duplicates.inc({ stream: stream.name }, results.length - fresh.length);
    if (fresh.length > 0 && stream.head === 0) this.hub.addToCommit(stream.doc, { [keys.stream(stream.name)]: 1 });
    if (fresh.length > 0) {
      this.metrics.published.inc({ stream: stream.name }, fresh.length);
      this.metrics.delivered.inc({ stream: stream.name }, fresh.length * stream.doc.subscribers.size);
      stream.doc.ydoc.transact(() => appendEvents(stream.segments, fresh), ROOM);
      stream.head += fresh.length;
      stream.lastTs = ts;
      for (const [id, ack] of batchIds) stream.ids.set(id, { seq: ack.seq, ts: ack.ts });
      this.#trimIds(stream);
      for (const listener of stream.listeners) listener(stream);
      for (const listener of this.appended) listener(stream);
      const tail = logTail(stream.segments);
      this.#draftArchive(stream, tail, fresh.length);
      this.#maybeArchive(stream, tail);
      if (fresh.length >= COMMIT_SOON_EVENTS) this.hub.commitSoon(stream.doc);
    }
    return { ok: true, results };
  }

  /**
   * Makes the archived ids among `events` known in `ids`, with their seqs, by reading the index
   * of each archived segment that may hold one (`dedupe.ts`): `append` is synchronous and
   * checks `ids` only.
   */
  async recall(stream: StreamState, events: readonly { id: string }[]): Promise<void> {
    if (stream.archived.size === 0) return;
    const wanted = new Map<number, string[]>();
    for (const { id } of events) {
      if (stream.ids.has(id)) continue;
      for (const segNo of stream.archived.candidates(id)) {
        const ids = wanted.get(segNo) ?? [];
        wanted.set(segNo, ids);
        ids.push(id);
      }
    }
    for (const [segNo, ids] of wanted) {
      const idx = await this.storage.get<ArchiveIndex>(idxPrefix(stream.name) + pad(segNo));
      if (!idx) continue;
      for (const id of ids) {
        const i = idx.ids.indexOf(id);
        if (i >= 0 && !stream.ids.has(id)) stream.ids.set(id, { seq: idx.seqs[0] + i, ts: idx.lastTs });
      }
    }
  }

  #trimIds(stream: StreamState): void {
    // Oldest first: archived hashes (older than any id in `ids` but recalled ones), then `ids`
    // in insertion order.
    let excess = stream.ids.size + stream.archived.size - this.options.dedupeMaxIds;
    if (excess <= 0) return;
    const hashed = Math.min(excess, stream.archived.size);
    stream.archived.dropOldest(hashed);
    excess -= hashed;
    if (excess <= 0) return;
    let n = 0;
    for (const id of stream.ids.keys()) {
      if (n++ >= excess) break;
      stream.ids.delete(id);
    }
  }

  // -------------------------------------------------------------------------------------
  // Window and archive

  /** Archives what left the window, if anything did; `tail` is the first seq the document holds. */
  #maybeArchive(stream: StreamState, tail: number): void {
    if (stream.archiving) return;
    // Archive a segment only when everything in it is older than the window.
    if (tail + LOG_SEGMENT_SIZE - 1 > stream.head - this.options.window) return;
    stream.archiving = true;
    void this.#archive(stream).finally(() => {
      stream.archiving = false;
    });
  }

  /**
   * Drafts some more of the archive of the segment to be archived next (`ArchiveDraft`), once
   * it is full and within {@link DRAFT_AHEAD} events of leaving the window: `appended` events
   * were just appended; `tail` is the first seq the document holds. Not while an archive is
   * under way (a burst): that one encodes what is left itself.
   */
  #draftArchive(stream: StreamState, tail: number, appended: number): void {
    if (stream.archiving) return;
    const last = tail + LOG_SEGMENT_SIZE - 1;
    if (last > stream.head || last > stream.head - this.options.window + DRAFT_AHEAD) return;
    const segNo = segmentOf(tail);
    const segment = stream.segments.get(String(segNo));
    if (!segment || segment.length !== LOG_SEGMENT_SIZE) return;
    if (stream.draft?.segNo !== segNo) {
      this.#dropDraft(stream);
      stream.draft = emptyDraft(segNo);
    }
    const draft = stream.draft;
    const before = draft.chars;
    this.#drafted(draft, segment, tail, DRAFT_PER_EVENT * Math.max(1, appended), DRAFT_MAX_CHARS - this.#draftChars);
    this.#draftChars += draft.chars - before;
  }

  /** Forgets `stream`'s draft, if any. */
  #dropDraft(stream: StreamState): void {
    if (!stream.draft) return;
    this.#draftChars -= stream.draft.chars;
    stream.draft = null;
  }

  /**
   * Drafts up to `count` more events of `segment` (whose first seq is `tail`) into `draft`,
   * stopping once it took `budget` more characters.
   */
  #drafted(
    draft: ArchiveDraft,
    segment: Y.Array<LogEntry>,
    tail: number,
    count: number,
    budget = Number.POSITIVE_INFINITY,
  ): ArchiveDraft {
    const end = Math.min(segment.length, draft.json.length + count);
    const limit = draft.chars + budget;
    for (let i = draft.json.length; i < end && draft.chars < limit; i++) {
      const event = storedEvent(segment.get(i), tail + i);
      const json = JSON.stringify(event);
      draft.json.push(json);
      draft.ids.push(event.id);
      draft.lastTs = event.ts;
      draft.chars += json.length;
    }
    return draft;
  }

  async #archive(stream: StreamState): Promise<void> {
    for (;;) {
      const tail = logTail(stream.segments);
      const last = tail + LOG_SEGMENT_SIZE - 1;
      if (last > stream.head - this.options.window) return;
      const segNo = segmentOf(tail);
      const segment = stream.segments.get(String(segNo));
      if (!segment) return;
      // What the draft holds of it, and the rest now (all of it in a burst, which outruns drafting).
      const started = stream.draft?.segNo === segNo ? stream.draft : null;
      this.#dropDraft(stream);
      const draft = this.#drafted(started ?? emptyDraft(segNo), segment, tail, LOG_SEGMENT_SIZE);
      const text = `[${draft.json.join(",")}]`;
      const entries: Record<string, unknown> = {};
      for (let i = 0, part = 0; i < text.length; i += ARCHIVE_PART_CHARS, part++) {
        entries[arcPrefix(stream.name, segNo) + pad(part)] = text.slice(i, i + ARCHIVE_PART_CHARS);
      }
      const index: ArchiveIndex = { ids: draft.ids, seqs: [tail, last], lastTs: draft.lastTs };
      entries[idxPrefix(stream.name) + pad(segNo)] = index;
      // Archive first, durably; only then drop the segment from the live document.
      await putAll(this.storage, entries);
      // Their ids stay remembered, as hashes: the index just stored holds them.
      const hashes: number[] = [];
      for (const id of draft.ids) if (stream.ids.delete(id)) hashes.push(idHash(id));
      stream.archived.addSegment(segNo, hashes);
      stream.doc.ydoc.transact(() => stream.segments.delete(String(segNo)), ROOM);
      await this.hub.stored(stream.doc);
    }
  }

  /**
   * An archived segment; compaction (`retention.ts`) leaves `null` where it removed an
   * event, so every other event keeps its place.
   */
  async #archivedSegment(stream: string, segNo: number): Promise<(StoredEvent | null)[]> {
    const key = `${stream}:${segNo}`;
    const cached = this.#archiveCache.get(key);
    if (cached) {
      // Read again: it becomes the newest.
      this.#archiveCache.delete(key);
      this.#archiveCache.set(key, cached);
      return cached.events;
    }
    const parts = await this.storage.list<string>({ prefix: arcPrefix(stream, segNo) });
    const text = [...parts.values()].join("");
    const events = parts.size > 0 ? (JSON.parse(text) as (StoredEvent | null)[]) : [];
    if (this.#archiveCache.has(key)) return events;
    this.#archiveCache.set(key, { events, chars: text.length });
    this.#archiveCacheChars += text.length;
    for (const [old, entry] of this.#archiveCache) {
      if (this.#archiveCache.size <= ARCHIVE_CACHE_SEGMENTS && this.#archiveCacheChars <= ARCHIVE_CACHE_CHARS) break;
      if (old === key) continue;
      this.#uncache(old, entry.chars);
    }
    return events;
  }

  #uncache(key: string, chars: number): void {
    this.#archiveCache.delete(key);
    this.#archiveCacheChars -= chars;
  }

  /** Retention rewrote or removed archived segments of `name`: read them from storage again. */
  forget(name: string): void {
    for (const [key, entry] of [...this.#archiveCache]) if (key.startsWith(`${name}:`)) this.#uncache(key, entry.chars);
  }

  /** The oldest seq `name` still keeps: its first archived segment, else its live window. */
  async firstKept(name: string): Promise<number> {
    const stream = await this.open(name);
    const first = await this.storage.list<ArchiveIndex>({ prefix: idxPrefix(name), limit: 1 });
    const idx = [...first.values()][0];
    return idx ? Math.min(idx.seqs[0], logTail(stream.segments)) : logTail(stream.segments);
  }

  /** Every event `from`..`to` (inclusive), page by page, archive and live document alike. */
  async *scan(name: string, from: number, to?: number): AsyncGenerator<StoredEvent> {
    let next: number | null = from;
    while (next !== null) {
      const page = await this.read(name, next, to, MAX_HISTORY_PAGE);
      yield* page.events;
      next = page.events.length > 0 ? page.next : null;
    }
  }

  /**
   * A page of history as `who` may see it: all of it with the whole stream readable; otherwise
   * only the types it may read, reading on until the page has some or the range ends (so an
   * empty page still means the end).
   */
  async readAs(
    who: Principal,
    name: string,
    range: { from: number; to?: number | undefined; limit: number },
  ): Promise<{ events: StoredEvent[]; head: number; next: number | null }> {
    if (canReadStream(who, name)) return this.read(name, range.from, range.to, range.limit);
    const events: StoredEvent[] = [];
    let next: number | null = range.from;
    let head = 0;
    while (next !== null && events.length === 0) {
      const page = await this.read(name, next, range.to, range.limit);
      head = page.head;
      events.push(...page.events.filter((e) => canReadEvent(who, e)));
      next = page.events.length > 0 ? page.next : null;
    }
    return { events, head, next };
  }

  /** Events `from`..`to` (inclusive), at most `limit`, from the archive and the live document. */
  async read(
    name: string,
    from: number,
    to: number | undefined,
    limit: number,
  ): Promise<{ events: StoredEvent[]; head: number; next: number | null }> {
    const stream = await this.open(name);
    const last = Math.min(to ?? stream.head, stream.head);
    const events: StoredEvent[] = [];
    let seq = Math.max(1, from);
    while (seq <= last && events.length < limit) {
      const live = eventAt(stream.segments, seq);
      if (live) {
        events.push(live);
        seq++;
        continue;
      }
      const segNo = segmentOf(seq);
      const archived = await this.#archivedSegment(name, segNo);
      const offset = (seq - 1) % LOG_SEGMENT_SIZE;
      if (archived.length <= offset) {
        const firstSeq = await this.firstKept(name);
        if (seq < firstSeq) {
          throw new CrosstalkError(
            "EVENTS_REMOVED",
            `stream ${name}: events before seq ${firstSeq} were removed by its retention`,
            { firstSeq },
          );
        }
        throw new Error(`stream ${name}: seq ${seq} is neither live nor archived`);
      }
      for (let i = offset; i < archived.length && seq <= last && events.length < limit; i++, seq++) {
        const event = archived[i];
        if (event) events.push(event);
      }
    }
    return { events, head: stream.head, next: seq <= last ? seq : null };
  }
}

/** Streams answer `publish` and `history`, and serve a stream's history over HTTP as NDJSON. */
export const streamModule = (streams: Streams): RoomModule<"publish" | "history"> => ({
  frames: {
    publish: (session, frame, wire) => streams.publish(session, frame, wire.chars),
    history: async (session, frame) => {
      try {
        return { reply: await streams.readAs(session, frame.stream, frame) };
      } catch (error) {
        if (error instanceof CrosstalkError) return { error: error.toBody() };
        throw error;
      }
    },
  },
  routes: [
    {
      // `GET …/<team>/streams/<stream>?from=&to=&limit=`: the history (archive included).
      path: "streams/:stream",
      handle: async (params, url) => {
        const stream = nameSchema.safeParse(params.stream);
        const num = (k: string) => (url.searchParams.has(k) ? Number(url.searchParams.get(k)) : undefined);
        const from = num("from") ?? 1;
        const to = num("to");
        const limit = num("limit") ?? 1000;
        if (!stream.success || ![from, to ?? 1, limit].every((n) => Number.isInteger(n) && n >= 1)) {
          return httpError(400, { code: "INVALID_ARGUMENT", message: "stream, from, to and limit must be valid" });
        }
        const firstSeq = await streams.firstKept(stream.data);
        if (from < firstSeq && (await streams.open(stream.data)).head >= from) {
          return httpError(410, {
            code: "EVENTS_REMOVED",
            message: `events before seq ${firstSeq} were removed by the stream's retention`,
            details: { firstSeq },
          });
        }
        // Streamed as it is read: a large `limit` costs time, never the room's memory.
        const events = streams.scan(stream.data, from, to);
        const encoder = new TextEncoder();
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const next = sent < limit ? await events.next() : { done: true as const, value: undefined };
            if (next.done) {
              controller.close();
              return;
            }
            sent++;
            controller.enqueue(encoder.encode(`${JSON.stringify(next.value)}\n`));
          },
          async cancel() {
            await events.return(undefined);
          },
        });
        return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
      },
    },
  ],
});
