/**
 * The client's side of document sync: each opened document is a local Y.Doc kept in step
 * with the room's copy by the y-protocols exchange, over the team socket. Documents are
 * reference-counted: the first `open` syncs, the last `release` stops updates.
 *
 * A refused write (the room answers an update with an `error` naming the document: the
 * policy changed under the write) is never left to diverge silently: Yjs would hold every
 * later update of this client pending behind the refused one, so the local document is
 * thrown away and synced again from scratch under a new Yjs client id, and the owner is
 * told (`onReset`). A document the agent may not read is not synced at all.
 * Not re-exported from the package entry point; `team.ts` owns it.
 */

import type * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { CrosstalkError, type DocName, encodeDocFrame, isWritableByClients } from "../protocol/index.ts";
import type { Transport } from "./transport.ts";

/** Origin of updates that came from the room, so they are not sent back. */
export const REMOTE = Symbol("remote");
/** Held local updates are sent at once when they reach this size (well under the room's `maxUpdateBytes`). */
const OUTBOX_BYTES = 64 * 1024;

type OpenDoc = {
  doc: Y.Doc;
  refs: number;
  /** True once the room's step 2 arrived on the current connection. */
  synced: boolean;
  everSynced: boolean;
  waiters: { resolve: () => void; reject: (error: CrosstalkError) => void }[];
  /** A fresh copy's step 1 is on its way: a further refusal meanwhile does not ask again. */
  resyncing: boolean;
  /**
   * After a rebase: the fresh copy syncing from the room, and the notice. `doc` stays the
   * local copy everyone reads and writes until `next` has synced; then what `doc` holds that
   * the room had not seen is carried over onto `next`, which takes its place. A further notice
   * meanwhile answers a message the old copy sent before it, and changes nothing.
   */
  rebase?: { next: Y.Doc; notice: RebaseNotice; error: CrosstalkError };
  /**
   * Local updates are not sent live until the room's step 1 on this connection is answered:
   * that answer (our step 2) carries them, and an update sent before it could depend on one
   * the room never got (lost with the old socket) and be refused as incomplete.
   */
  held: boolean;
};

/**
 * One map entry this client wrote, or deleted (`deleted`), and the room had not seen when it
 * rebased the document.
 */
type CarriedWrite = { root: string; key: string; value?: unknown; deleted?: true };

/**
 * What a `REBASED` notice says: the room's clock of each retired Yjs client id (`known`), and
 * the ids of entries it held unchanged since (`live`: client id → clocks).
 */
export type RebaseNotice = { known: Record<string, number>; live: Record<string, number[]> };

export type DocSyncOptions = {
  /** May this agent read `name` (its permissions, as the room last said)? */
  mayRead: (name: DocName) => boolean;
  /** The room refused a write to `name`: the document was replaced by a fresh `doc`, syncing anew. */
  onReset: (name: DocName, doc: Y.Doc, error: CrosstalkError) => void;
  /**
   * Every local copy made: durable storage hooks in here, restoring what it kept into a first
   * copy (`restore`), forgetting it for a fresh one after a refusal.
   */
  onCreate?: (name: DocName, doc: Y.Doc, restore: boolean) => void;
};

export class DocSync {
  readonly #docs = new Map<DocName, OpenDoc>();
  /** Documents whose local updates are sent live (`#sendLive`). */
  readonly #live = new WeakSet<Y.Doc>();
  /**
   * Local updates of one document not sent yet: those made in the same tick go out as one
   * merged update (`#flush`, at the end of the tick, before any other frame, or once they
   * reach {@link OUTBOX_BYTES}), so a loop of small writes costs the room one update, not one each.
   */
  #outbox: { name: DocName; doc: Y.Doc; updates: Uint8Array[]; bytes: number } | null = null;

  constructor(
    private readonly transport: Transport,
    private readonly options: DocSyncOptions,
  ) {
    transport.beforeSend = () => this.#flush();
  }

  open(name: DocName): Y.Doc {
    const open = this.#docs.get(name);
    if (open) {
      open.refs++;
      return open.doc;
    }
    const doc = this.#create(name);
    const entry: OpenDoc = {
      doc,
      refs: 1,
      synced: false,
      everSynced: false,
      waiters: [],
      resyncing: false,
      held: true,
    };
    this.#docs.set(name, entry);
    this.#sendStep1(name, doc);
    return doc;
  }

  #create(name: DocName, restore = true): Y.Doc {
    const doc = new Y.Doc();
    // Restored updates (from durable storage) apply before the sync hook: the step 1/2 exchange carries them.
    this.options.onCreate?.(name, doc, restore);
    return doc;
  }

  /**
   * Sends `doc`'s local updates live from now on: once the room's step 1 has been answered,
   * the first time. Not before: until then nothing is sent live anyway (`held`), and while a
   * document has an update listener Yjs encodes every transaction for it, the first sync's
   * too — the whole namespace, once more, for nothing.
   */
  #sendLive(name: DocName, doc: Y.Doc): void {
    if (!isWritableByClients(name) || this.#live.has(doc)) return;
    this.#live.add(doc);
    doc.on("update", (update: Uint8Array, origin: unknown) => {
      // Offline edits stay in the doc; the step 1/2 exchange on reconnect carries them. So do
      // edits of a copy a rebase replaced (carried over once the fresh copy has synced).
      const open = this.#docs.get(name);
      if (origin !== REMOTE && open?.held === false && open.doc === doc && !open.rebase) this.#hold(name, doc, update);
    });
  }

  #hold(name: DocName, doc: Y.Doc, update: Uint8Array): void {
    // A merged update is never larger than the largest of its parts or OUTBOX_BYTES (the room's
    // `maxUpdateBytes` holds for what one transaction makes, as before).
    if (this.#outbox && (this.#outbox.doc !== doc || this.#outbox.bytes + update.byteLength > OUTBOX_BYTES))
      this.#flush();
    if (!this.#outbox) {
      this.#outbox = { name, doc, updates: [], bytes: 0 };
      queueMicrotask(() => this.#flush());
    }
    this.#outbox.updates.push(update);
    this.#outbox.bytes += update.byteLength;
    if (this.#outbox.bytes >= OUTBOX_BYTES) this.#flush();
  }

  /** Sends the held local updates as one. Dropped if the document is held again (or replaced) meanwhile: the step 1/2 exchange carries them. */
  #flush(): void {
    const out = this.#outbox;
    if (!out) return;
    this.#outbox = null;
    const open = this.#docs.get(out.name);
    if (open?.doc !== out.doc || open.held) return;
    const update = out.updates.length === 1 ? (out.updates[0] as Uint8Array) : Y.mergeUpdates(out.updates);
    this.transport.sendBinary(encodeDocFrame(out.name, (e) => syncProtocol.writeUpdate(e, update)));
  }

  /** Resolves once the document has synced with the room at least once; fails if it may not be read. */
  synced(name: DocName): Promise<void> {
    const open = this.#docs.get(name);
    if (!open || open.everSynced) return Promise.resolve();
    return new Promise((resolve, reject) => open.waiters.push({ resolve, reject }));
  }

  /**
   * The room refused `name` (an `error` frame naming it): a write it did not apply, or a
   * read the agent lost. The local copy is thrown away for a fresh one with a new Yjs client
   * id, which syncs from the room if the agent may still read it. False if not open here.
   */
  refused(name: DocName, error: CrosstalkError): boolean {
    const open = this.#docs.get(name);
    if (!open) return false;
    const old = open.doc;
    open.doc = this.#create(name, false);
    open.synced = false;
    open.everSynced = false;
    open.held = true;
    old.destroy();
    open.rebase?.next.destroy();
    open.rebase = undefined;
    this.options.onReset(name, open.doc, error);
    if (!this.options.mayRead(name)) {
      this.#refuseWaiters(open, error);
    } else if (!open.resyncing) {
      open.resyncing = true;
      this.#sendStep1(name, open.doc);
    }
    return true;
  }

  /**
   * The room rebased `name` onto a fresh copy to shed its history (`REBASED`): a fresh local
   * copy syncs from the room, while the current one stays in use; once the fresh copy has
   * synced, the writes of the current copy the room had not seen (made offline or in flight,
   * or restored from local storage: past the clock `notice.known` gives for their Yjs client
   * id) are written onto it again, entry by entry, and so are its deletes of entries the room
   * still held unchanged (`notice.live`); then it takes the current copy's place. False if not
   * open here.
   */
  rebased(name: DocName, notice: RebaseNotice, error: CrosstalkError): boolean {
    const open = this.#docs.get(name);
    if (!open) return false;
    if (open.rebase) return true;
    // Only a sync target until it has synced: no owner, no storage, nothing sent from it.
    const next = new Y.Doc();
    open.rebase = { next, notice, error };
    open.synced = false;
    open.held = true;
    if (this.options.mayRead(name)) this.#sendStep1(name, next);
    return true;
  }

  /** The fresh copy of a rebase has synced: carry the current copy's unseen changes over, and swap. */
  #rebaseSynced(name: DocName, open: OpenDoc): void {
    const rebase = open.rebase;
    if (!rebase) return;
    const old = open.doc;
    // Deletes first: a write made after a delete (both unseen) is carried after it.
    const carry = [...unseenDeletes(old, rebase.notice.live), ...unsynced(old, rebase.notice.known)];
    open.rebase = undefined;
    // The copy put in use is made like any other (durable storage drops what it kept of the
    // old base and keeps this one), with what the fresh copy synced.
    open.doc = this.#create(name, false);
    Y.applyUpdate(open.doc, Y.encodeStateAsUpdate(rebase.next), REMOTE);
    rebase.next.destroy();
    if (carry.length > 0)
      open.doc.transact(() => {
        for (const w of carry) {
          if (w.deleted) open.doc.getMap(w.root).delete(w.key);
          else open.doc.getMap(w.root).set(w.key, w.value);
        }
      });
    old.destroy();
    this.options.onReset(name, open.doc, rebase.error);
  }

  #refuseWaiters(open: OpenDoc, error: CrosstalkError): void {
    for (const w of open.waiters.splice(0)) w.reject(error);
  }

  release(name: DocName): void {
    const open = this.#docs.get(name);
    if (!open || --open.refs > 0) return;
    this.#flush();
    this.#docs.delete(name);
    this.transport.send({ type: "doc.close", doc: name });
    open.doc.destroy();
    open.rebase?.next.destroy();
  }

  /** After (re)connecting: ask the room for everything we lack in every open document this agent may read. */
  resync(): void {
    for (const [name, open] of this.#docs) {
      open.synced = false;
      open.held = true;
      if (this.options.mayRead(name)) this.#sendStep1(name, open.rebase?.next ?? open.doc);
      else this.#refuseWaiters(open, new CrosstalkError("FORBIDDEN", `this agent may not read ${name}`));
    }
  }

  receive(name: DocName, decoder: decoding.Decoder): void {
    const open = this.#docs.get(name);
    if (!open) return; // Released while frames were in flight.
    const reply = encoding.createEncoder();
    // Sync after a rebase goes to the fresh copy, not yet in use.
    const type = syncProtocol.readSyncMessage(decoder, reply, open.rebase?.next ?? open.doc, REMOTE);
    if (encoding.length(reply) > 0) {
      const body = encoding.toUint8Array(reply);
      this.transport.sendBinary(encodeDocFrame(name, (e) => encoding.writeUint8Array(e, body)));
    }
    if (type === syncProtocol.messageYjsSyncStep1) {
      open.held = false;
      this.#sendLive(name, open.doc);
    }
    if (type === syncProtocol.messageYjsSyncStep2) {
      open.synced = true;
      open.resyncing = false;
      this.#rebaseSynced(name, open);
      if (!open.everSynced) {
        open.everSynced = true;
        for (const w of open.waiters.splice(0)) w.resolve();
      }
    }
  }

  /** Every open document this agent may read has synced on the current connection. */
  allSynced(): boolean {
    for (const [name, open] of this.#docs) if (!open.synced && this.options.mayRead(name)) return false;
    return true;
  }

  destroy(): void {
    for (const open of this.#docs.values()) {
      open.doc.destroy();
      open.rebase?.next.destroy();
    }
    this.#docs.clear();
  }

  /** The current local copy of `name` (replaced after a refusal). */
  doc(name: DocName): Y.Doc | undefined {
    return this.#docs.get(name)?.doc;
  }

  #sendStep1(name: DocName, doc: Y.Doc): void {
    this.transport.sendBinary(encodeDocFrame(name, (e) => syncProtocol.writeSyncStep1(e, doc)));
  }
}

/**
 * The map entries of `doc`'s root maps that the room had not seen (structs past the clock
 * `known` gives for their Yjs client id, 0 for an id the room never saw) and that still hold
 * (not overwritten since): what a rebase has not seen of this copy. Every client id counts, not
 * only the current one: a copy restored from local storage after a restart holds the offline
 * writes of the agent's earlier client ids. Writes of other agents reached this copy through
 * the room, so the room's clocks cover them. Nested types are not carried.
 */
function unsynced(doc: Y.Doc, known: Record<string, number>): CarriedWrite[] {
  const roots = new Map<unknown, string>();
  for (const [name, type] of doc.share) roots.set(type, name);
  const out: CarriedWrite[] = [];
  for (const [client, structs] of doc.store.clients) {
    const clock = known[String(client)] ?? 0;
    for (const struct of structs) {
      if (!(struct instanceof Y.Item) || struct.deleted || struct.id.clock + struct.length <= clock) continue;
      const root = roots.get(struct.parent);
      if (root === undefined || struct.parentSub === null || struct.content instanceof Y.ContentType) continue;
      out.push({ root, key: struct.parentSub, value: struct.content.getContent().at(-1) });
    }
  }
  return out;
}

/**
 * The map entries `doc` deleted where the room did not see it: of the items `live` names
 * (client id → clocks: entries the room held unchanged when it rebased), those deleted in
 * this copy. A delete the room saw, or an entry written since, is not among them.
 */
function unseenDeletes(doc: Y.Doc, live: Record<string, number[]>): CarriedWrite[] {
  const roots = new Map<unknown, string>();
  for (const [name, type] of doc.share) roots.set(type, name);
  const out: CarriedWrite[] = [];
  for (const [client, clocks] of Object.entries(live)) {
    const structs = doc.store.clients.get(Number(client));
    if (!structs) continue;
    const state = Y.getState(doc.store, Number(client));
    for (const clock of clocks) {
      if (clock >= state) continue;
      const struct = structs[Y.findIndexSS(structs, clock)];
      if (!(struct instanceof Y.Item) || !struct.deleted || struct.parentSub === null) continue;
      const root = roots.get(struct.parent);
      if (root !== undefined) out.push({ root, key: struct.parentSub, deleted: true });
    }
  }
  return out;
}
