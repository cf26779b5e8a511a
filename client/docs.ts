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
   * True once this connection answered the room's step 1 with everything the room lacked.
   * Until then local updates are not sent one by one: an update lost with the previous socket
   * would leave a gap under the next one, which the room refuses (and closes the socket for);
   * the step 2 answer carries them all instead.
   */
  caughtUp: boolean;
};

export type DocSyncOptions = {
  /** May this agent read `name` (its permissions, as the room last said)? */
  mayRead: (name: DocName) => boolean;
  /** The room refused a write to `name`: the document was replaced by a fresh `doc`, syncing anew. */
  onReset: (name: DocName, doc: Y.Doc, error: CrosstalkError) => void;
  /** Every local copy made (first open, or a fresh one after a refusal): durable storage hooks in here. */
  onCreate?: (name: DocName, doc: Y.Doc) => void;
};

export class DocSync {
  readonly #docs = new Map<DocName, OpenDoc>();

  constructor(
    private readonly transport: Transport,
    private readonly options: DocSyncOptions,
  ) {}

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
      caughtUp: false,
    };
    this.#docs.set(name, entry);
    this.#sendStep1(name, doc);
    return doc;
  }

  #create(name: DocName): Y.Doc {
    const doc = new Y.Doc();
    // Restored updates (from durable storage) apply before the sync hook: the step 1/2 exchange carries them.
    this.options.onCreate?.(name, doc);
    if (isWritableByClients(name)) {
      doc.on("update", (update: Uint8Array, origin: unknown) => {
        // Offline edits stay in the doc; the step 1/2 exchange on reconnect carries them.
        if (origin === REMOTE || !this.#docs.get(name)?.caughtUp) return;
        this.transport.sendBinary(encodeDocFrame(name, (e) => syncProtocol.writeUpdate(e, update)));
      });
    }
    return doc;
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
    open.doc = this.#create(name);
    open.synced = false;
    open.everSynced = false;
    open.caughtUp = false;
    old.destroy();
    this.options.onReset(name, open.doc, error);
    if (!this.options.mayRead(name)) {
      this.#refuseWaiters(open, error);
    } else if (!open.resyncing) {
      open.resyncing = true;
      this.#sendStep1(name, open.doc);
    }
    return true;
  }

  #refuseWaiters(open: OpenDoc, error: CrosstalkError): void {
    for (const w of open.waiters.splice(0)) w.reject(error);
  }

  release(name: DocName): void {
    const open = this.#docs.get(name);
    if (!open || --open.refs > 0) return;
    this.#docs.delete(name);
    this.transport.send({ type: "doc.close", doc: name });
    open.doc.destroy();
  }

  /** After (re)connecting: ask the room for everything we lack in every open document this agent may read. */
  resync(): void {
    for (const [name, open] of this.#docs) {
      open.synced = false;
      open.caughtUp = false;
      if (this.options.mayRead(name)) this.#sendStep1(name, open.doc);
      else this.#refuseWaiters(open, new CrosstalkError("FORBIDDEN", `this agent may not read ${name}`));
    }
  }

  receive(name: DocName, decoder: decoding.Decoder): void {
    const open = this.#docs.get(name);
    if (!open) return; // Released while frames were in flight.
    const reply = encoding.createEncoder();
    const type = syncProtocol.readSyncMessage(decoder, reply, open.doc, REMOTE);
    if (encoding.length(reply) > 0) {
      const body = encoding.toUint8Array(reply);
      this.transport.sendBinary(encodeDocFrame(name, (e) => encoding.writeUint8Array(e, body)));
    }
    if (type === syncProtocol.messageYjsSyncStep1) open.caughtUp = true;
    if (type === syncProtocol.messageYjsSyncStep2) {
      open.synced = true;
      open.resyncing = false;
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
    for (const open of this.#docs.values()) open.doc.destroy();
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
