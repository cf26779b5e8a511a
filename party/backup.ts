/**
 * Backup and restore of a team: `GET …/<team>/backup` streams it as NDJSON, `POST
 * …/<team>/backup` restores a batch of those lines. Both need `policy.admin` (`policy.ts`).
 * `crosstalk export` / `crosstalk import` (cli/backup.ts) drive them; this is also how a team
 * moves between hosts.
 *
 * Lines (`BackupLine`), in this order:
 * - `header`: format, version, a `backupId`, and totals for a progress bar;
 * - `policy`: the stored policy as it is (revision included);
 * - `segment`: one archived segment of a stream as stored — its events with `null` holes
 *   where compaction removed one, and its id index — so the archive, retention's gaps
 *   included, is restored exactly; segments retention removed are simply absent;
 * - `events`: the live window's events, in seq order, a page per line;
 * - `writers`: which agent writes under each Yjs client id of a namespace (`docs.ts` keeps
 *   a client id to its first writer), so the restored room refuses the same forgeries;
 * - `state`: a namespace as one Yjs update (`Y.encodeStateAsUpdate`), base64, in parts;
 * - `consumer`: a durable consumer's or consumer group's stored record;
 * - `end`.
 * Every line stays far below a stored value (128 KiB) or a WebSocket message (1 MB) except a
 * segment line, which holds what one archive segment holds; the export is streamed, never
 * built in memory.
 *
 * Restore is idempotent and resumable: every POST starts with the header; the first one
 * marks the room (`restore` → the backup id) and needs it empty (no stream but the audit
 * stream with events, no namespace); later ones need the same backup id. Segments are put as
 * they are, live events below the stream's head are skipped, an update applied twice changes
 * nothing, a consumer record is put only where none is. Rerunning an interrupted import
 * therefore ends in the same room.
 *
 * What is not in a backup: inboxes, leases, idempotent call results, A2A tasks, traces.
 * An export taken while agents write is consistent per line, not as a whole: stop writers for
 * an exact copy.
 */
import * as Y from "yjs";
import {
  AUDIT_STREAM,
  CrosstalkError,
  eventAt,
  LOG_SEGMENT_SIZE,
  logTail,
  nameSchema,
  type StoredEvent,
  stateDoc,
  storedEventSchema,
} from "../protocol/index.ts";
import type { RoomContext } from "./context.ts";
import { type DocHub, isRetiredWriter, ROOM } from "./docs.ts";
import { httpError, type RoomModule } from "./handlers.ts";
import { keys, pad } from "./keys.ts";
import { appendEvents } from "./log.ts";
import { type KvStorage, putAll } from "./storage.ts";
import { ARCHIVE_PART_CHARS, type ArchiveIndex, type Streams } from "./streams.ts";
import type { StoredPolicy, TeamPolicy } from "./team-policy.ts";

export const BACKUP_FORMAT = "crosstalk-backup";
export const BACKUP_VERSION = 1;
/** Live events per `events` line, and base64 characters per `state` line. */
const EVENTS_PER_LINE = 200;
const STATE_CHARS_PER_LINE = 256 * 1024;

export type BackupLine =
  | {
      kind: "header";
      format: typeof BACKUP_FORMAT;
      version: number;
      team: string;
      backupId: string;
      exportedAt: number;
      totals: { lines: number };
    }
  | { kind: "policy"; stored: StoredPolicy }
  | { kind: "segment"; stream: string; segment: number; index: ArchiveIndex; events: (StoredEvent | null)[] }
  | { kind: "events"; stream: string; tail: number; events: StoredEvent[] }
  | { kind: "state"; ns: string; part: number; parts: number; update: string }
  | { kind: "writers"; ns: string; writers: Record<string, string> }
  | { kind: "consumer"; key: string; record: unknown }
  | { kind: "end"; backupId: string };

type Deps = { streams: Streams; policy: TeamPolicy; team: string };

const RESTORE_KEY = "restore";

const toBase64 = (bytes: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
const fromBase64 = (text: string): Uint8Array => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

export class Backup {
  private readonly storage: KvStorage;
  private readonly hub: DocHub;
  private readonly now: () => number;
  /** Parts of state updates received so far, per namespace (a part per line). */
  readonly #parts = new Map<string, string[]>();

  constructor(
    ctx: RoomContext,
    private readonly deps: Deps,
  ) {
    ({ storage: this.storage, hub: this.hub, now: this.now } = ctx);
  }

  async #namespaces(): Promise<string[]> {
    const prefix = "doc|state/";
    const listed = await this.storage.list({ prefix });
    const names = new Set<string>();
    for (const key of listed.keys()) if (key.endsWith("|meta")) names.add(key.slice(prefix.length, -"|meta".length));
    return [...names].sort();
  }

  /** The team, line by line. */
  async *export(): AsyncGenerator<BackupLine> {
    const streams = (await this.deps.streams.names()).sort();
    const namespaces = await this.#namespaces();
    const consumers = [
      ...(await this.storage.list({ prefix: "cons|" })).keys(),
      ...(await this.storage.list({ prefix: "grp|" })).keys(),
    ];
    let lines = 3 + consumers.length + 2 * namespaces.length;
    for (const name of streams) {
      const stream = await this.deps.streams.open(name);
      const idx = await this.storage.list({ prefix: keys.archiveIndexPrefix(name) });
      lines += idx.size + Math.ceil((stream.head - logTail(stream.segments) + 1) / EVENTS_PER_LINE);
    }
    const backupId = `${this.deps.team}-${this.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    yield {
      kind: "header",
      format: BACKUP_FORMAT,
      version: BACKUP_VERSION,
      team: this.deps.team,
      backupId,
      exportedAt: this.now(),
      totals: { lines },
    };
    await this.deps.policy.load();
    yield { kind: "policy", stored: this.deps.policy.current() };
    for (const name of streams) {
      const idxPrefix = keys.archiveIndexPrefix(name);
      const index = await this.storage.list<ArchiveIndex>({ prefix: idxPrefix });
      for (const [key, idx] of index) {
        const segment = Number(key.slice(idxPrefix.length));
        const parts = await this.storage.list<string>({ prefix: keys.archivePrefix(name, segment) });
        const events = JSON.parse([...parts.values()].join("")) as (StoredEvent | null)[];
        yield { kind: "segment", stream: name, segment, index: idx, events };
      }
      const stream = await this.deps.streams.open(name);
      const tail = logTail(stream.segments);
      const head = stream.head;
      for (let from = tail; from <= head; from += EVENTS_PER_LINE) {
        const events: StoredEvent[] = [];
        for (let seq = from; seq <= Math.min(head, from + EVENTS_PER_LINE - 1); seq++) {
          const event = eventAt(stream.segments, seq);
          if (event) events.push(event);
        }
        yield { kind: "events", stream: name, tail, events };
      }
    }
    for (const ns of namespaces) {
      const prefix = keys.yjsWriterPrefix(stateDoc(ns));
      const writers = await this.storage.list<string>({ prefix });
      if (writers.size > 0)
        yield {
          kind: "writers",
          ns,
          // Client ids a rebase retired are the source room's history: the export holds the current base.
          writers: Object.fromEntries(
            [...writers].filter(([, a]) => !isRetiredWriter(a)).map(([k, a]) => [k.slice(prefix.length), a]),
          ),
        };
      const doc = await this.hub.open(stateDoc(ns));
      const update = toBase64(Y.encodeStateAsUpdate(doc.ydoc));
      const parts = Math.max(1, Math.ceil(update.length / STATE_CHARS_PER_LINE));
      for (let part = 0; part < parts; part++) {
        const slice = update.slice(part * STATE_CHARS_PER_LINE, (part + 1) * STATE_CHARS_PER_LINE);
        yield { kind: "state", ns, part, parts, update: slice };
      }
    }
    for (const key of consumers) yield { kind: "consumer", key, record: withoutLeases(await this.storage.get(key)) };
    yield { kind: "end", backupId };
  }

  /** Applies a batch of lines (the first is the header); answers how many were applied. */
  async restore(lines: unknown[]): Promise<{ applied: number; skipped: number }> {
    const [header, ...rest] = lines as BackupLine[];
    if (header?.kind !== "header" || header.format !== BACKUP_FORMAT || header.version !== BACKUP_VERSION)
      throw new CrosstalkError("INVALID_ARGUMENT", `a restore batch starts with a ${BACKUP_FORMAT} v1 header line`);
    await this.#claim(header.backupId);
    let applied = 0;
    let skipped = 0;
    for (const line of rest) {
      if ((await this.#apply(line)) === "applied") applied++;
      else skipped++;
    }
    return { applied, skipped };
  }

  /** The room restores this backup: it is empty, or already restoring the same one. */
  async #claim(backupId: string): Promise<void> {
    const marker = await this.storage.get<{ backupId: string }>(RESTORE_KEY);
    if (marker?.backupId === backupId) return;
    if (marker) {
      throw new CrosstalkError("CONFLICT", `this room was restored from backup ${marker.backupId}, not ${backupId}`, {
        backupId: marker.backupId,
      });
    }
    const streams = [];
    for (const name of await this.deps.streams.names()) {
      if (name !== AUDIT_STREAM || (await this.deps.streams.open(name)).head > 0) streams.push(name);
    }
    const namespaces = await this.#namespaces();
    if (streams.length > 0 || namespaces.length > 0) {
      throw new CrosstalkError("CONFLICT", "a backup is restored into an empty room; this one has data", {
        streams: streams.slice(0, 10),
        namespaces: namespaces.slice(0, 10),
      });
    }
    await this.storage.put({ [RESTORE_KEY]: { backupId, startedAt: this.now() } });
  }

  async #apply(line: BackupLine): Promise<"applied" | "skipped"> {
    switch (line.kind) {
      case "header":
      case "end":
        return "skipped";
      case "policy":
        await this.deps.policy.restore(line.stored);
        return "applied";
      case "segment": {
        const name = this.#name(line.stream);
        const first = line.segment * LOG_SEGMENT_SIZE + 1;
        if (
          !Number.isInteger(line.segment) ||
          line.segment < 0 ||
          !Array.isArray(line.events) ||
          line.events.length < 1 ||
          line.events.length > LOG_SEGMENT_SIZE
        )
          throw new CrosstalkError("INVALID_ARGUMENT", `stream ${name}: not a valid archived segment`);
        line.events.forEach((e, i) => {
          if (e !== null) this.#event(name, e, first + i);
        });
        // The index is read whenever the stream opens: one the room could not have written
        // would break the stream (and every later export) for good.
        if (!validIndex(line.index, first, line.events))
          throw new CrosstalkError("INVALID_ARGUMENT", `stream ${name}: segment ${line.segment} has an invalid index`);
        const text = JSON.stringify(line.events);
        const entries: Record<string, unknown> = {};
        for (let i = 0, part = 0; i < text.length; i += ARCHIVE_PART_CHARS, part++)
          entries[keys.archivePrefix(name, line.segment) + pad(part)] = text.slice(i, i + ARCHIVE_PART_CHARS);
        entries[keys.archiveIndexPrefix(name) + pad(line.segment)] = line.index;
        entries[keys.stream(name)] = 1;
        await putAll(this.storage, entries);
        this.deps.streams.forget(name);
        return "applied";
      }
      case "events": {
        const stream = await this.deps.streams.open(this.#name(line.stream));
        for (const e of line.events) this.#event(stream.name, e, e?.seq);
        const fresh = line.events.filter((e) => e.seq > stream.head);
        if (fresh.length === 0) return "skipped";
        const start = stream.head === 0 ? line.tail : stream.head + 1;
        fresh.forEach((e, i) => {
          if (e.seq !== start + i)
            throw new CrosstalkError(
              "INVALID_ARGUMENT",
              `stream ${stream.name}: event ${e.seq} does not follow ${start + i - 1}`,
            );
        });
        if (stream.head === 0) this.hub.addToCommit(stream.doc, { [keys.stream(stream.name)]: 1 });
        stream.doc.ydoc.transact(() => appendEvents(stream.segments, fresh), ROOM);
        stream.head = (fresh.at(-1) as StoredEvent).seq;
        for (const e of fresh) {
          stream.ids.set(e.id, { seq: e.seq, ts: e.ts });
          stream.lastTs = Math.max(stream.lastTs, e.ts);
        }
        await this.hub.stored(stream.doc);
        return "applied";
      }
      case "state": {
        const ns = this.#name(line.ns);
        const parts = this.#parts.get(ns)?.length === line.parts ? (this.#parts.get(ns) as string[]) : [];
        parts[line.part] = line.update;
        this.#parts.set(ns, parts);
        if (parts.filter((p) => p !== undefined).length < line.parts) return "applied";
        this.#parts.delete(ns);
        const doc = await this.hub.open(stateDoc(ns));
        Y.applyUpdate(doc.ydoc, fromBase64(parts.join("")), ROOM);
        await this.hub.stored(doc);
        return "applied";
      }
      case "writers": {
        const doc = stateDoc(this.#name(line.ns));
        const entries: Record<string, string> = {};
        for (const [client, agent] of Object.entries(line.writers ?? {})) {
          if (!/^\d+$/.test(client)) throw new CrosstalkError("INVALID_ARGUMENT", `not a Yjs client id: ${client}`);
          entries[keys.yjsWriter(doc, Number(client))] = this.#name(agent);
        }
        await putAll(this.storage, entries);
        return "applied";
      }
      case "consumer": {
        if (!/^(cons|grp)\|[^|]+\|[^|]+$/.test(line.key))
          throw new CrosstalkError("INVALID_ARGUMENT", `not a consumer key: ${line.key}`);
        // Read back by consumers and by retention's hold: a record the room could not have
        // written (a position not a number) would make the hold NaN, which holds nothing.
        if (!(line.key.startsWith("cons|") ? validDurable(line.record) : validGroup(line.record)))
          throw new CrosstalkError("INVALID_ARGUMENT", `consumer ${line.key}: not a stored consumer record`);
        if ((await this.storage.get(line.key)) !== undefined) return "skipped";
        await this.storage.put({ [line.key]: line.record });
        return "applied";
      }
      default:
        throw new CrosstalkError("INVALID_ARGUMENT", `unknown backup line ${(line as { kind?: unknown }).kind}`);
    }
  }

  /** A backup is untrusted input like any frame: every event must be one the room could have stored, at its place. */
  #event(stream: string, event: unknown, seq: unknown): void {
    const parsed = storedEventSchema.safeParse(event);
    if (!parsed.success || parsed.data.stream !== stream || parsed.data.seq !== seq)
      throw new CrosstalkError(
        "INVALID_ARGUMENT",
        `stream ${stream}: event at seq ${String(seq)} is not a stored event`,
      );
  }

  #name(name: unknown): string {
    const parsed = nameSchema.safeParse(name);
    if (!parsed.success) throw new CrosstalkError("INVALID_ARGUMENT", `not a valid name: ${String(name)}`);
    return parsed.data;
  }
}

/** `GET …/<team>/backup` (NDJSON) and `POST …/<team>/backup` (NDJSON lines, header first). */
export const backupModule = (backup: Backup): RoomModule => ({
  frames: {},
  routes: [
    {
      path: "backup",
      methods: ["GET", "POST"],
      handle: async (_params, _url, { req }) => {
        if (req.method === "POST") {
          let lines: unknown[];
          try {
            lines = (await req.text())
              .split("\n")
              .filter((l) => l.trim() !== "")
              .map((l) => JSON.parse(l) as unknown);
          } catch {
            return httpError(400, { code: "BAD_FRAME", message: "the body is not NDJSON" });
          }
          try {
            return Response.json(await backup.restore(lines));
          } catch (error) {
            if (!(error instanceof CrosstalkError)) throw error;
            return httpError(error.code === "CONFLICT" ? 409 : 400, error.toBody());
          }
        }
        const lines = backup.export();
        const encoder = new TextEncoder();
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const next = await lines.next();
            if (next.done) controller.close();
            else controller.enqueue(encoder.encode(`${JSON.stringify(next.value)}\n`));
          },
          async cancel() {
            await lines.return(undefined);
          },
        });
        return new Response(body, { headers: { "content-type": "application/x-ndjson" } });
      },
    },
  ],
});

const isPosition = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A durable consumer's record as `consumers.ts` stores it. */
function validDurable(record: unknown): boolean {
  return isRecord(record) && isPosition(record.acked) && Number.isFinite(record.updatedAt);
}

/** A consumer group's record as `consumers.ts` stores it (leases are not in a backup). */
function validGroup(record: unknown): boolean {
  if (!isRecord(record) || !isRecord(record.config) || typeof record.config.pattern !== "string") return false;
  const { floor, done, deliveries, updatedAt } = record;
  return (
    isPosition(floor) &&
    Array.isArray(done) &&
    done.every(isPosition) &&
    Array.isArray(deliveries) &&
    deliveries.every((d) => Array.isArray(d) && d.length === 2 && isPosition(d[0]) && isPosition(d[1])) &&
    Number.isFinite(updatedAt)
  );
}

/** An archive index as `streams.ts` writes it for a segment of `events` starting at `first`. */
function validIndex(index: unknown, first: number, events: (StoredEvent | null)[]): index is ArchiveIndex {
  if (typeof index !== "object" || index === null) return false;
  const { ids, seqs, lastTs } = index as Partial<ArchiveIndex>;
  return (
    Array.isArray(ids) &&
    ids.length === events.length &&
    ids.every((id, i) => typeof id === "string" && (events[i] === null || events[i]?.id === id)) &&
    Array.isArray(seqs) &&
    seqs.length === 2 &&
    seqs[0] === first &&
    seqs[1] === first + events.length - 1 &&
    typeof lastTs === "number" &&
    Number.isFinite(lastTs)
  );
}

/**
 * A group's leases name agents of the source room holding events right now; a backup carries
 * none (like inboxes), so the restored group hands every unacknowledged event out again.
 */
function withoutLeases(record: unknown): unknown {
  if (typeof record !== "object" || record === null || !("leases" in record)) return record;
  const { leases: _, ...rest } = record as Record<string, unknown>;
  return rest;
}
