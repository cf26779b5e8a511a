/**
 * The client's side of document sync: each opened document is a local Y.Doc kept in step
 * with the room's copy by the y-protocols exchange, over the team socket. Documents are
 * reference-counted: the first `open` syncs, the last `release` stops updates.
 * Not re-exported from the package entry point; `team.ts` owns it.
 */

import type * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { type DocName, encodeDocFrame, isWritableByClients } from "../protocol/index.ts";
import type { Transport } from "./transport.ts";

/** Origin of updates that came from the room, so they are not sent back. */
export const REMOTE = Symbol("remote");

type OpenDoc = {
  readonly doc: Y.Doc;
  refs: number;
  /** True once the room's step 2 arrived on the current connection. */
  synced: boolean;
  everSynced: boolean;
  waiters: (() => void)[];
};

export class DocSync {
  readonly #docs = new Map<DocName, OpenDoc>();

  constructor(private readonly transport: Transport) {}

  open(name: DocName): Y.Doc {
    const open = this.#docs.get(name);
    if (open) {
      open.refs++;
      return open.doc;
    }
    const doc = new Y.Doc();
    const entry: OpenDoc = { doc, refs: 1, synced: false, everSynced: false, waiters: [] };
    this.#docs.set(name, entry);
    if (isWritableByClients(name)) {
      doc.on("update", (update: Uint8Array, origin: unknown) => {
        // Offline edits stay in the doc; the step 1/2 exchange on reconnect carries them.
        if (origin !== REMOTE)
          this.transport.sendBinary(encodeDocFrame(name, (e) => syncProtocol.writeUpdate(e, update)));
      });
    }
    this.#sendStep1(name, doc);
    return doc;
  }

  /** Resolves once the document has synced with the room at least once. */
  synced(name: DocName): Promise<void> {
    const open = this.#docs.get(name);
    if (!open || open.everSynced) return Promise.resolve();
    return new Promise((resolve) => open.waiters.push(resolve));
  }

  release(name: DocName): void {
    const open = this.#docs.get(name);
    if (!open || --open.refs > 0) return;
    this.#docs.delete(name);
    this.transport.send({ type: "doc.close", doc: name });
    open.doc.destroy();
  }

  /** After (re)connecting: ask the room for everything we lack in every open document. */
  resync(): void {
    for (const [name, open] of this.#docs) {
      open.synced = false;
      this.#sendStep1(name, open.doc);
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
    if (type === syncProtocol.messageYjsSyncStep2) {
      open.synced = true;
      if (!open.everSynced) {
        open.everSynced = true;
        for (const resolve of open.waiters.splice(0)) resolve();
      }
    }
  }

  destroy(): void {
    for (const open of this.#docs.values()) open.doc.destroy();
    this.#docs.clear();
  }

  #sendStep1(name: DocName, doc: Y.Doc): void {
    this.transport.sendBinary(encodeDocFrame(name, (e) => syncProtocol.writeSyncStep1(e, doc)));
  }
}
