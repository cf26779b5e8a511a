/**
 * The room's Yjs documents: loading from storage, the y-protocols sync exchange with each
 * session, and the commit queue that makes every update durable before anyone sees it.
 *
 * Commit queue: updates that arrive while a storage write is in flight collect in the next
 * batch (group commit), so throughput does not drop to one write per update. A batch's
 * updates are broadcast, and its `after` callbacks (acks, sync replies) run, only once the
 * batch is stored. A sync step 2 computed from the in-memory document is likewise held until
 * everything it contains is stored.
 */
import * as decoding from "lib0/decoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import {
  DEFAULT_ROOM_LIMITS,
  DEFLATE_MIN_BYTES,
  type DocName,
  type ErrorBody,
  encodeDocFrame,
  isWritableByClients,
  MAX_JSON_DEPTH,
  type RoomLimits,
} from "../protocol/index.ts";
import type { IdleDocs } from "./doc-cache.ts";
import type { RoomModule } from "./handlers.ts";
import { snapshotFrames } from "./kept-snapshot.ts";
import { keys } from "./keys.ts";
import type { Metrics } from "./metrics.ts";
import { emptyLive, liveEntries, liveIds, loadLive, nextLive, type RebaseLive } from "./rebase-live.ts";
import { RawDocSession, type Session } from "./session.ts";
import {
  appendUpdate,
  compact,
  compactTail,
  type KvStorage,
  loadDoc,
  needsCompaction,
  putAll,
  type StoredDoc,
} from "./storage.ts";
import { deflatedStep2, step2Frame } from "./sync-share.ts";
import { checkUpdate } from "./update-check.ts";

/** Origin of updates applied while loading from storage: not re-persisted. */
const LOADING = Symbol("loading");
/** The root map of entity meta in a state document (`protocol/entities.ts`). */
const META_MAP = "meta";
/** Origin of the room's own writes (stream appends). */
export const ROOM = Symbol("room");
/**
 * The owner recorded for a Yjs client id whose structs a rebase folded away (`#retired@<clock>`:
 * the clock the room had of it). Not an agent name, so no session ever writes under it.
 */
const RETIRED = "#retired@";
/** Whether a recorded writer is a retired client id's (`RETIRED`), not an agent. */
export const isRetiredWriter = (writer: string): boolean => writer.startsWith(RETIRED);
/**
 * When a state document is rebased: once it holds `minStructs` structs more than its live
 * entries and its structs outnumber them `ratio` times over. Tests make it small, so that
 * rebases interleave with every other operation.
 */
export type RebaseTuning = { minStructs: number; ratio: number };
const REBASE_DEFAULTS: RebaseTuning = { minStructs: 4096, ratio: 4 };

type Batch = {
  updates: { update: Uint8Array; origin: Session | typeof ROOM }[];
  after: (() => void)[];
  /** Storage entries that must commit together with this batch's updates. */
  extra: Record<string, unknown>;
  /** Stored, and its `after` callbacks run: what is added now runs at once. */
  done?: true;
};

export type HubDoc = {
  readonly name: DocName;
  readonly ydoc: Y.Doc;
  readonly stored: StoredDoc;
  readonly subscribers: Set<Session>;
  /** Only the room writes documents that clients may not. */
  readonly clientWritable: boolean;
  /**
   * Which agent writes under each Yjs client id (its first writer, for good; stored with
   * the update that introduced it). Yjs trusts the client id inside an update, so without
   * this an agent could write under another's id and clock and silently replace its edits.
   */
  readonly writers: Map<number, string>;
  /** What the last rebase kept for deletes made against an old base (`rebase-live.ts`). */
  live: RebaseLive;
  pending: Batch | null;
  inflight: Batch | null;
  /** Room time of its last use (`doc-cache.ts`). */
  usedAt: number;
  /** Set once the hub has let it go (`unload`): a write to it after that revives it or is fatal. */
  unloaded: boolean;
  /**
   * The fold or compaction under way, until its deletes are done: no other copy of the
   * document loads meanwhile (it would read records being folded and deleted under it).
   */
  maintenance: Promise<void> | null;
};

/**
 * Why the room refused a sync message. `close`: the session sent an update the room cannot
 * apply safely (malformed, throwing, leaving pending structs, too large or too deep), so
 * `dispatch.ts` closes it with `BadUpdate` after reporting the error.
 */
export type Refusal = { error: ErrorBody; close?: true };

/** The limits the hub enforces (`RoomLimits`). */
export type HubLimits = Pick<RoomLimits, "maxUpdateBytes" | "maxDocDepth" | "maxOpenDocs">;

export class DocHub {
  readonly #docs = new Map<DocName, HubDoc>();
  readonly #loading = new Map<DocName, Promise<HubDoc>>();
  /** Unloads documents nobody uses (`doc-cache.ts`); none are without it. */
  idle: IdleDocs | null = null;
  readonly #rebaseTuning: RebaseTuning | null;

  constructor(
    private readonly storage: KvStorage,
    /** Called when storage fails: the in-memory state can no longer be trusted. */
    private readonly fatal: (error: unknown) => void,
    private readonly limits: HubLimits = DEFAULT_ROOM_LIMITS,
    /** Counts rebases (`#rebase`). */
    private readonly metrics?: Metrics,
    /** Whether state documents are rebased at all, and when (`RoomOptions.rebase`). */
    rebase: boolean | Partial<RebaseTuning> = false,
  ) {
    this.#rebaseTuning = rebase === false ? null : { ...REBASE_DEFAULTS, ...(rebase === true ? {} : rebase) };
  }

  /** Every document loaded in memory. */
  all(): IterableIterator<HubDoc> {
    return this.#docs.values();
  }

  loaded(name: DocName): HubDoc | undefined {
    return this.#docs.get(name);
  }

  open(name: DocName): Promise<HubDoc> {
    const doc = this.#docs.get(name);
    if (doc) {
      this.idle?.touch(doc);
      return Promise.resolve(doc);
    }
    let loading = this.#loading.get(name);
    if (!loading) {
      loading = this.#load(name).finally(() => this.#loading.delete(name));
      this.#loading.set(name, loading);
    }
    return loading;
  }

  async #load(name: DocName): Promise<HubDoc> {
    // GC stays on: deleted content (trimmed log segments, overwritten fields) is dropped.
    const ydoc = new Y.Doc({ gc: true });
    // A log sheds its dead segments' records instead of compacting (`storage.ts` `shedDead`):
    // only the room writes it, and a segment's key is never set again once deleted.
    const stored = await loadDoc(this.storage, name, ydoc, LOADING, { shed: name.startsWith("log/") });
    const writers = new Map<number, string>();
    if (isWritableByClients(name)) {
      const prefix = keys.yjsWriterPrefix(name);
      for (const [key, agent] of await this.storage.list<string>({ prefix }))
        writers.set(Number(key.slice(prefix.length)), agent);
    }
    const live = isWritableByClients(name) ? await loadLive(this.storage, name) : emptyLive();
    return this.#install({ name, ydoc, stored, writers, live });
  }

  /** Makes `ydoc` the room's live copy of `name`: its updates go through the commit queue from now on. */
  #install(init: Pick<HubDoc, "name" | "ydoc" | "stored" | "writers" | "live">): HubDoc {
    const doc: HubDoc = {
      ...init,
      subscribers: new Set(),
      clientWritable: isWritableByClients(init.name),
      pending: null,
      inflight: null,
      usedAt: 0,
      unloaded: false,
      maintenance: null,
    };
    this.idle?.touch(doc);
    doc.ydoc.on("update", (update: Uint8Array, origin: unknown) => {
      if (origin === LOADING) return;
      this.#batch(doc).updates.push({ update, origin: origin as Session | typeof ROOM });
    });
    this.#docs.set(init.name, doc);
    return doc;
  }

  /** The batch that will hold the next update, starting the commit loop if idle. */
  #batch(doc: HubDoc): Batch {
    if (doc.unloaded) this.#revive(doc);
    if (!doc.pending) {
      this.idle?.touch(doc);
      doc.pending = { updates: [], after: [], extra: {} };
      // A macrotask, not a microtask: everything delivered in this turn joins the batch. (On
      // workerd `storage.put` resolves at once, so a microtask made one record per update.)
      if (!doc.inflight) setTimeout(() => void this.#commitLoop(doc), 0);
    }
    return doc.pending;
  }

  /**
   * Forgets `doc` if nothing needs it in memory: no subscriber, nothing pending or in flight
   * (so its encoded state is all in storage). The next `open` loads it again. True if it went.
   */
  unload(doc: HubDoc): boolean {
    if (this.#docs.get(doc.name) !== doc || this.#loading.has(doc.name)) return false;
    if (doc.subscribers.size > 0 || doc.pending || doc.inflight || doc.maintenance) return false;
    this.#docs.delete(doc.name);
    doc.unloaded = true;
    return true;
  }

  /**
   * A module wrote to a document it opened before the hub unloaded it: if no other copy was
   * loaded since, the old one is simply the live copy again (nothing was written meanwhile);
   * otherwise two copies would write the same records, and the room stops instead.
   */
  #revive(doc: HubDoc): void {
    doc.unloaded = false;
    if (!this.#docs.has(doc.name) && !this.#loading.has(doc.name)) {
      this.#docs.set(doc.name, doc);
      return;
    }
    this.fatal(new Error(`document ${doc.name} was written through a copy unloaded since`));
  }

  /** Stores `entries` atomically with the document's next committed batch. */
  addToCommit(doc: HubDoc, entries: Record<string, unknown>): void {
    Object.assign(this.#batch(doc).extra, entries);
  }

  /**
   * Commits `doc`'s pending batch once this turn's microtasks are done instead of at the next
   * timer tick. For a batch that is large already (a frame of a burst): it is stored and
   * broadcast while the room reads the next frame, so subscribers decode one part of a burst
   * while the room works on the next, instead of all of it after the room is done. Small
   * batches keep waiting for the tick, which groups a paced stream's publishes in one record.
   */
  commitSoon(doc: HubDoc): void {
    if (doc.pending && !doc.inflight) queueMicrotask(() => void this.#commitLoop(doc));
  }

  /** Runs `fn` once everything applied to `doc` so far is durable (now, if it already is). */
  afterCommit(doc: HubDoc, fn: () => void): void {
    const batch = doc.pending ?? doc.inflight;
    if (batch && !batch.done) batch.after.push(fn);
    else fn();
  }

  /** Resolves once everything applied to `doc` so far is durable. */
  stored(doc: HubDoc): Promise<void> {
    return new Promise((resolve) => this.afterCommit(doc, resolve));
  }

  async #commitLoop(doc: HubDoc): Promise<void> {
    if (doc.inflight) return;
    while (doc.pending) {
      const batch = doc.pending;
      doc.pending = null;
      doc.inflight = batch;
      try {
        await this.#commit(doc, batch);
        // Not only when idle: under a steady load the next batch is always pending, and the
        // history would grow until the load stops (`#rebase` commits what is pending first).
        if (this.#rebaseTuning && rebaseable(doc, this.#rebaseTuning)) {
          doc.inflight = null;
          return this.#rebase(doc);
        }
        // Deleting what the compaction folded does not hold up the next commits: after a steady
        // stream it is thousands of records (1,424 took 72 ms to list and delete in workerd),
        // which every subscriber's next events waited for.
        // Only the live copy: one being rebuilt holds what `#rebuild` threw away, and its
        // fresh copy is reading the records a fold would delete.
        const live = () => this.#docs.get(doc.name) === doc;
        if (live() && needsCompaction(doc.stored) && !(await this.#burstGoesOn(doc)) && live())
          await this.#maintain(doc);
      } catch (error) {
        doc.inflight = null;
        this.fatal(error);
        return;
      }
      doc.inflight = null;
    }
  }

  /** Folds or compacts `doc`'s records (`compactTail`); its deletes go on behind the next commits. */
  async #maintain(doc: HubDoc): Promise<void> {
    let deleting: Promise<void> = Promise.resolve();
    const compacting = compactTail(this.storage, doc.stored, doc.ydoc, (d) => {
      deleting = d;
    });
    // A failed fold is the commit loop's to report; a failed delete is reported here.
    const maintenance = compacting
      .then(
        () => deleting.catch(this.fatal),
        () => {},
      )
      .finally(() => {
        if (doc.maintenance === maintenance) doc.maintenance = null;
      });
    doc.maintenance = maintenance;
    await compacting;
  }

  /**
   * Whether more of a burst arrived within a timer tick of the last commit (frames waiting in
   * the socket are handled before a timer): it is committed first, and the compaction, which
   * rewrites the whole document, waits for a lull, unless it is overdue (`needsCompaction`'s
   * slack) as under a steady load that never pauses.
   */
  async #burstGoesOn(doc: HubDoc): Promise<boolean> {
    if (needsCompaction(doc.stored, 2)) return false;
    await new Promise((resolve) => setTimeout(resolve, 0));
    return doc.pending !== null;
  }

  /** Stores one batch, then broadcasts its updates and runs its `after` callbacks. */
  async #commit(doc: HubDoc, batch: Batch): Promise<void> {
    if (batch.updates.length > 0) {
      const merged =
        batch.updates.length === 1
          ? (batch.updates[0] as Batch["updates"][number]).update
          : Y.mergeUpdates(batch.updates.map((u) => u.update));
      await appendUpdate(this.storage, doc.stored, merged, batch.extra, doc.ydoc);
      this.#broadcast(doc, batch, merged);
    } else if (Object.keys(batch.extra).length > 0) {
      await this.storage.put(batch.extra);
    }
    for (const fn of batch.after) fn();
    batch.done = true;
  }

  /**
   * Rebases state document `old` onto a fresh Y.Doc holding only its live entries. Yjs keeps
   * a struct for every overwritten map value, so a namespace written in a loop grows with its
   * history rather than its content; `rebaseable` says when that history outweighs it. The
   * fresh copy becomes the document's next snapshot generation (`compact`), and the Yjs client
   * ids it folded away are recorded as retired, with the clock the room had of each: a client
   * still on the old base is told `REBASED` (with that clock, so it can carry its own later
   * writes over) and syncs afresh, instead of mixing old structs into the new base. Messages
   * for the document wait meanwhile, as for a load; what was applied before is committed first.
   */
  #rebase(old: HubDoc): Promise<void> {
    this.#docs.delete(old.name);
    const rebased = (async () => {
      for (let batch = old.pending; batch; batch = old.pending) {
        old.pending = null;
        old.inflight = batch;
        await this.#commit(old, batch);
        old.inflight = null;
      }
      return this.#rebaseOnto(old);
    })().finally(() => this.#loading.delete(old.name));
    this.#loading.set(old.name, rebased);
    return rebased.then(
      () => {},
      (error: unknown) => this.fatal(error),
    );
  }

  /** The rebase proper, once everything applied to `old` is stored: see `#rebase`. */
  async #rebaseOnto(old: HubDoc): Promise<HubDoc> {
    const fresh = new Y.Doc({ gc: true });
    fresh.transact(() => {
      for (const [root, type] of old.ydoc.share) {
        const target = fresh.getMap(root);
        for (const [key, item] of type._map) if (!item.deleted) target.set(key, item.content.getContent().at(-1));
      }
    }, LOADING);
    const clocks = Y.decodeStateVector(Y.encodeStateVector(old.ydoc));
    const writers = new Map(old.writers);
    const retired: Record<string, string> = {};
    for (const [client, clock] of clocks) {
      writers.set(client, `${RETIRED}${clock}`);
      retired[keys.yjsWriter(old.name, client)] = `${RETIRED}${clock}`;
    }
    const live = nextLive(old.ydoc, old.live, fresh.clientID);
    const liveStored = liveEntries(old.name, live);
    // Retired first: should the room stop between the two, the ids are still in the current
    // document, and `#retired` ignores a retirement the document does not bear out (and a
    // live record naming ids of the current document only names entries it still holds).
    await putAll(this.storage, { ...retired, ...liveStored.put });
    await compact(this.storage, old.stored, fresh);
    if (liveStored.drop.length > 0) await this.storage.delete(liveStored.drop);
    const doc = this.#install({ name: old.name, ydoc: fresh, stored: old.stored, writers, live });
    this.metrics?.rebases.inc({ doc: old.name });
    // Every retired id's clock, not only the subscriber's own: a client carries over exactly
    // what lies past them (its own unsynced writes, also those of earlier client ids restored
    // from its storage); everything else it holds came through the room.
    const known: Record<string, number> = Object.fromEntries(clocks);
    const error = rebasedError(old.name, known, liveIds(live));
    for (const s of old.subscribers) s.sendFrame({ type: "error", doc: old.name, error });
    old.ydoc.destroy();
    return doc;
  }

  /**
   * Null unless one of `clients` was retired by a rebase (and the document bears it out); then
   * the `REBASED` refusal: the clock the room had of every retired id, which the client carries
   * its writes over by, and the ids of the entries still unchanged since (its deletes of those
   * are carried over), of the clients in `holds` when the whole set the copy holds is known.
   */
  #retired(doc: HubDoc, clients: Iterable<number>, holds?: ReadonlySet<number>): ErrorBody | null {
    const isRetired = (client: number): boolean =>
      !!doc.writers.get(client)?.startsWith(RETIRED) && !doc.ydoc.store.clients.has(client);
    let any = false;
    for (const client of clients) if (isRetired(client)) any = true;
    if (!any) return null;
    const known: Record<string, number> = {};
    for (const [client, owner] of doc.writers)
      if (isRetired(client)) known[client] = Number((owner as string).slice(RETIRED.length));
    return rebasedError(doc.name, known, liveIds(doc.live, holds));
  }

  /**
   * One frame per batch: the merged update goes to every subscriber. Only when the batch has a
   * single writer is that writer skipped; with several, each also gets its own changes back,
   * which Yjs ignores — cheaper than one frame per update per subscriber.
   */
  #broadcast(doc: HubDoc, batch: Batch, merged: Uint8Array): void {
    if (doc.subscribers.size === 0) return;
    const first = batch.updates[0]?.origin;
    const soleWriter = first !== ROOM && batch.updates.every((u) => u.origin === first) ? first : null;
    const frame = encodeDocFrame(doc.name, (e) => syncProtocol.writeUpdate(e, merged));
    for (const s of doc.subscribers) if (s !== soleWriter) s.pushBinary(frame);
  }

  /**
   * Handles one y-protocols sync message from `session` for `name`. Returns the refusal to
   * report to the session, or null.
   */
  async receive(session: Session, name: DocName, decoder: decoding.Decoder): Promise<Refusal | null> {
    let messageType: number;
    let payload: Uint8Array;
    try {
      messageType = decoding.readVarUint(decoder);
      if (messageType > syncProtocol.messageYjsUpdate) {
        return { error: { code: "UNKNOWN_FRAME", message: `unknown sync message type ${messageType}` } };
      }
      payload = decoding.readVarUint8Array(decoder);
    } catch {
      return { error: { code: "BAD_FRAME", message: "truncated sync message" } };
    }
    switch (messageType) {
      case syncProtocol.messageYjsSyncStep1: {
        if (!session.docs.has(name) && session.docs.size >= this.limits.maxOpenDocs) {
          return {
            error: {
              code: "LIMIT_EXCEEDED",
              message: `this connection has ${session.docs.size} documents open, the most it may; close one first`,
              details: { limit: "maxOpenDocs", max: this.limits.maxOpenDocs },
            },
          };
        }
        const doc = await this.open(name);
        // A large snapshot goes deflated to an agent (a stock Yjs client would not read it);
        // should compressing fail, as it is. State repeats keys in every item (~10x smaller
        // deflated), and its compressed snapshot is kept for the next loaders, with the updates
        // since (`kept-snapshot.ts`). So does a log window its events' field names (10,000
        // events: 1.2 MB, 80 KB deflated), and subscribers joining together share one
        // compression, so the room does not queue a megabyte per subscriber on its sockets. Not
        // a log's catch-up after a reconnect (the agent holds part of it): the wait for
        // compression showed in catch-up time there.
        const agent = !(session instanceof RawDocSession);
        let reply: (Uint8Array | Promise<Uint8Array>)[];
        try {
          const holds = new Set(Y.decodeStateVector(payload).keys());
          const stale = doc.clientWritable && this.#retired(doc, holds, holds);
          if (stale) return { error: stale };
          if (agent && isWritableByClients(name)) reply = snapshotFrames(name, doc.ydoc, payload);
          else {
            const step2 = step2Frame(name, doc.ydoc, payload);
            // A log: deflated only on a first sync (the agent holds nothing of it yet).
            const deflate = agent && holds.size === 0 && step2.byteLength >= DEFLATE_MIN_BYTES;
            reply = [deflate ? deflatedStep2(step2).catch(() => step2) : step2];
          }
        } catch {
          return { error: { code: "BAD_FRAME", message: "invalid state vector" } };
        }
        doc.subscribers.add(session);
        session.docs.add(name);
        this.afterCommit(doc, () => {
          for (const frame of reply) {
            if (frame instanceof Promise) session.sendLater(frame);
            else session.sendBinary(frame);
          }
          // Ask for what the client has and we lack; only where the client may write.
          if (doc.clientWritable)
            session.sendBinary(encodeDocFrame(name, (e) => syncProtocol.writeSyncStep1(e, doc.ydoc)));
        });
        return null;
      }
      case syncProtocol.messageYjsSyncStep2:
      case syncProtocol.messageYjsUpdate: {
        const doc = this.#docs.get(name) ?? (await this.#loading.get(name));
        if (doc) this.idle?.touch(doc);
        // Sent on the copy a rebase replaced, before the session read its `REBASED`: the client
        // carries what it holds over once its fresh copy syncs, so this is dropped, not refused.
        if (doc && !doc.subscribers.has(session) && session.docs.has(name) && doc.clientWritable) return null;
        if (!doc?.subscribers.has(session)) {
          return {
            error: {
              code: "NOT_FOUND",
              message: `document ${name} is not open on this connection: send a sync step 1 first`,
            },
          };
        }
        if (!doc.clientWritable) {
          if (isEmptyUpdate(payload)) return null;
          return {
            error: { code: "FORBIDDEN", message: `${name} is written only by the room; the update was not applied` },
          };
        }
        return this.#write(session, doc, payload);
      }
    }
    return { error: { code: "UNKNOWN_FRAME", message: `unknown sync message type ${messageType}` } };
  }

  /**
   * Applies a client's update to a client-writable document, all of it or nothing: checked
   * before (size, decoding, dependencies, depth: `update-check.ts`; authorship), and should
   * Yjs still throw or keep pending structs, the partial change is taken out of the commit
   * batch before anyone sees it and the document is rebuilt from storage.
   */
  #write(session: Session, doc: HubDoc, payload: Uint8Array): Refusal | null {
    const name = doc.name;
    const bad = (why: string): Refusal => ({
      error: { code: "BAD_FRAME", message: `unacceptable Yjs update for ${name} (${why}); nothing was applied` },
      close: true,
    });
    if (payload.byteLength > this.limits.maxUpdateBytes) {
      return {
        error: {
          code: "TOO_LARGE",
          message: `the update to ${name} has ${payload.byteLength} bytes, more than ${this.limits.maxUpdateBytes}; nothing was applied`,
          details: { limit: "maxUpdateBytes", max: this.limits.maxUpdateBytes },
        },
        close: true,
      };
    }
    let decoded: ReturnType<typeof Y.decodeUpdate>;
    try {
      // V1 only: client bytes never reach a V2 API (yjs#687: its decoder can loop forever).
      decoded = Y.decodeUpdate(payload);
    } catch {
      return bad("malformed");
    }
    // Written on a base the room has rebased away: the client resyncs and carries it over.
    // Checked before the update's dependencies: an item whose origin is a struct the rebase
    // folded away would otherwise look incomplete and close the socket as a bad update.
    const stale = this.#retired(doc, referencedClients(decoded));
    if (stale) return { error: stale };
    const problem = checkUpdate(decoded, doc.ydoc, {
      maxDepth: this.limits.maxDocDepth,
      maxJsonDepth: MAX_JSON_DEPTH,
    });
    if (problem) return bad(problem);
    const seen = authorship(decoded, doc.ydoc);
    const clients = [...seen.clients];
    const forged = clients.find((c) => (doc.writers.get(c) ?? session.writer) !== session.writer);
    if (forged !== undefined) {
      return {
        error: {
          code: "FORBIDDEN",
          message: `the update to ${name} is written under Yjs client ${forged}, which belongs to another agent; nothing was applied`,
        },
      };
    }
    if (seen.opaqueMeta) {
      return {
        error: {
          code: "FORBIDDEN",
          message: `the update to ${name} writes entity meta as something other than plain values; nothing was applied`,
        },
      };
    }
    const claimed = seen.updatedBy.find((agent) => agent !== session.agent);
    if (claimed !== undefined) {
      return {
        error: {
          code: "FORBIDDEN",
          message: `the update to ${name} says it was made by ${JSON.stringify(claimed).slice(0, 140)}, not by ${session.agent}; nothing was applied`,
        },
      };
    }
    const batch = doc.pending;
    const mark = batch?.updates.length ?? 0;
    let threw = false;
    try {
      Y.applyUpdate(doc.ydoc, payload, session);
    } catch {
      threw = true;
    }
    const store = doc.ydoc.store;
    if (threw || store.pendingStructs !== null || store.pendingDs !== null) {
      // What Yjs integrated before it stopped is in the batch, not yet stored or sent: drop it.
      if (doc.pending) doc.pending.updates.splice(doc.pending === batch ? mark : 0);
      doc.subscribers.delete(session);
      this.#rebuild(doc);
      return bad(threw ? "Yjs failed to apply it" : "it left pending structs");
    }
    for (const c of clients) {
      if (doc.writers.has(c)) continue;
      doc.writers.set(c, session.writer);
      this.addToCommit(doc, { [keys.yjsWriter(name, c)]: session.writer });
    }
    return null;
  }

  /**
   * Replaces a document whose memory can no longer be trusted (a partial update) with a fresh
   * copy from storage, once everything honest applied before is stored. Meanwhile its messages
   * wait for the copy; its subscribers move over, and their copies never saw the partial change.
   */
  #rebuild(old: HubDoc): void {
    console.warn(`[crosstalk] rebuilding ${old.name} from storage after an update Yjs could not apply`);
    this.#docs.delete(old.name);
    const rebuilt = (async () => {
      await this.stored(old);
      await old.maintenance;
      const fresh = await this.#load(old.name);
      for (const s of old.subscribers) if (!s.closed) fresh.subscribers.add(s);
      return fresh;
    })().finally(() => this.#loading.delete(old.name));
    this.#loading.set(old.name, rebuilt);
  }

  close(session: Session, name: DocName): void {
    this.#leave(session, this.#docs.get(name));
    session.docs.delete(name);
  }

  closeAll(session: Session): void {
    for (const name of session.docs) this.#leave(session, this.#docs.get(name as DocName));
    session.docs.clear();
  }

  /** The idle time of a document starts when its last subscriber leaves. */
  #leave(session: Session, doc: HubDoc | undefined): void {
    if (doc?.subscribers.delete(session)) this.idle?.touch(doc);
  }
}

/**
 * Who an update says wrote it: the Yjs client ids of its new structs, the `updatedBy` of its
 * entity meta, and whether it writes meta as anything but plain values (which could carry an
 * `updatedBy` past the check).
 */
type Authorship = { clients: Set<number>; updatedBy: string[]; opaqueMeta: boolean };

/**
 * Reads a client's decoded update for what it claims about its author. The
 * room binds Yjs client ids to agents and requires `updatedBy` in the `meta` map (the entity
 * layout in `protocol/entities.ts`) to name the writer, so attribution is the verified one.
 */
function authorship({ structs }: ReturnType<typeof Y.decodeUpdate>, ydoc: Y.Doc): Authorship {
  const clients = new Set<number>();
  const updatedBy: string[] = [];
  let opaqueMeta = false;
  const roots = rootResolver(structs, ydoc);
  for (const struct of structs) {
    if (struct instanceof Y.Skip) continue;
    clients.add(struct.id.client);
    if (!(struct instanceof Y.Item) || struct.content instanceof Y.ContentDeleted || roots(struct) !== META_MAP)
      continue;
    if (!(struct.content instanceof Y.ContentAny)) {
      opaqueMeta = true;
      continue;
    }
    for (const value of struct.content.arr) {
      const by = (value as { updatedBy?: unknown } | null)?.updatedBy;
      if (by !== undefined) updatedBy.push(String(by));
    }
  }
  return { clients, updatedBy, opaqueMeta };
}

/**
 * For a decoded update: the root type each of its items goes straight into, or null (nested,
 * or not resolvable yet — Yjs keeps such an item pending, unapplied). A decoded item names its
 * parent (by string, for a root type) only when it has no neighbours; otherwise — a map key
 * written again, say — the parent is its neighbour's, found in the same update (indexed once,
 * by client and clock) or in the document. Answers are memoized, so a whole update costs one
 * pass plus a binary search per hop.
 */
function rootResolver(structs: readonly (Y.Item | Y.GC | Y.Skip)[], ydoc: Y.Doc): (item: Y.Item) => string | null {
  const byClient = new Map<number, Y.Item[]>();
  for (const s of structs) {
    if (!(s instanceof Y.Item)) continue;
    const list = byClient.get(s.id.client) ?? [];
    byClient.set(s.id.client, list);
    list.push(s); // decodeUpdate yields each client's structs in clock order
  }
  const local = (ref: Y.ID): Y.Item | undefined => {
    const list = byClient.get(ref.client);
    if (!list) return undefined;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const item = list[mid] as Y.Item;
      if (ref.clock < item.id.clock) hi = mid - 1;
      else if (ref.clock >= item.id.clock + item.length) lo = mid + 1;
      else return item;
    }
    return undefined;
  };
  const rootNames = new Map<unknown, string>();
  for (const [name, type] of ydoc.share) rootNames.set(type, name);
  const memo = new Map<Y.Item, string | null>();
  const resolve = (item: Y.Item, depth: number): string | null => {
    const known = memo.get(item);
    if (known !== undefined) return known;
    let answer: string | null = null;
    const parent: unknown = item.parent;
    if (typeof parent === "string") answer = parent;
    else if (parent === null && depth < 10_000) {
      const ref = item.origin ?? item.rightOrigin;
      const neighbour = ref ? local(ref) : undefined;
      if (neighbour) answer = resolve(neighbour, depth + 1);
      else if (ref) {
        try {
          answer = rootNames.get(Y.getItem(ydoc.store, ref).parent) ?? null;
        } catch {
          answer = null;
        }
      }
    }
    memo.set(item, answer);
    return answer;
  };
  return (item) => resolve(item, 0);
}

/**
 * `REBASED` for `name`: `known` is the clock the room had of each retired client id named;
 * `live`, the ids (client → clocks) of entries unchanged since a rebase (`rebase-live.ts`).
 */
const rebasedError = (name: DocName, known: Record<string, number>, live: Record<string, number[]>): ErrorBody => ({
  code: "REBASED",
  message: `${name} was rebased onto a fresh copy to shed its history; sync it again`,
  details: { known, live },
});

/** Next struct count at which `rebaseable` looks again at a document that was not worth it. */
const nextRebaseCheck = new WeakMap<HubDoc, number>();

/**
 * Whether a state document's history outweighs its content enough to rebase it: many more
 * structs than live map entries. Only plain maps of plain values are rebased (what the state
 * API writes); a document with a list or nested type, or synced by a stock Yjs client (which
 * cannot be told to resync), keeps its history.
 */
function rebaseable(doc: HubDoc, tuning: RebaseTuning): boolean {
  if (!doc.clientWritable) return false;
  let structs = 0;
  for (const list of doc.ydoc.store.clients.values()) structs += list.length;
  if (structs < Math.max(tuning.minStructs, nextRebaseCheck.get(doc) ?? 0)) return false;
  for (const s of doc.subscribers) if (s instanceof RawDocSession) return false;
  let live = 0;
  for (const type of doc.ydoc.share.values()) {
    if (type._start !== null) return false;
    for (const item of type._map.values()) {
      if (item.deleted) continue;
      if (item.content instanceof Y.ContentType) return false;
      live++;
    }
  }
  if (structs - live >= tuning.minStructs && structs >= tuning.ratio * live) return true;
  // Counting is linear in the entries: a document not worth it yet is counted again only after
  // that many more structs, so the counting costs O(1) per write.
  nextRebaseCheck.set(doc, structs + Math.max(tuning.minStructs / 4, live));
  return false;
}

/** True when a Yjs update carries neither new structs nor deletions. */
export function isEmptyUpdate(update: Uint8Array): boolean {
  try {
    const { structs, ds } = Y.decodeUpdate(update);
    return structs.length === 0 && ds.clients.size === 0;
  } catch {
    return false;
  }
}

/**
 * `doc.close`. Documents are opened and written by binary sync messages, which
 * `dispatch.ts` hands to {@link DocHub.receive}.
 */
export const docModule = (hub: DocHub): RoomModule<"doc.close"> => ({
  frames: { "doc.close": (session, frame) => hub.close(session, frame.doc) },
});

/** Every Yjs client id an update writes under, deletes from, or builds on (origins, parents). */
function referencedClients(decoded: ReturnType<typeof Y.decodeUpdate>): Set<number> {
  const clients = new Set<number>(decoded.ds.clients.keys());
  for (const struct of decoded.structs) {
    clients.add(struct.id.client);
    if (!(struct instanceof Y.Item)) continue;
    if (struct.origin) clients.add(struct.origin.client);
    if (struct.rightOrigin) clients.add(struct.rightOrigin.client);
    if (struct.parent instanceof Y.ID) clients.add(struct.parent.client);
  }
  return clients;
}
