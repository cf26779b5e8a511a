/**
 * What a state-document rebase (`docs.ts`) remembers so that a delete made against the old
 * base is carried over like a write. A Yjs delete makes no struct, so the clocks a `REBASED`
 * notice gives cannot tell a client which of its deletes the room missed; instead the room
 * names the map entries whose value it still holds unchanged since the rebase: for every live
 * entry, the Yjs ids that value had on the bases it was folded from (the entry's item on the
 * old base, and on earlier bases while nobody wrote the entry since). A client whose copy has
 * one of those items deleted deleted it where the room did not see it, and deletes the entry
 * again on the fresh copy; a write anyone made to the entry since wins, as it would in Yjs.
 *
 * Stored beside the document (`keys.docRebaseLive`), in parts like a snapshot, so a client
 * offline across the rebase and a room restart still gets it.
 */
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import type * as Y from "yjs";
import { keys } from "./keys.ts";
import { type KvStorage, PART_BYTES, split } from "./storage.ts";

/** Ids kept per entry: a client on a base more rebases old than this has its deletes of that entry dropped. */
const MAX_CHAIN = 8;

/** The ids of one live entry on past bases: `[client, clock]`, oldest first. */
type Chain = [number, number][];

export type RebaseLive = {
  /** The Yjs client id the latest rebase wrote the fresh copy's entries under. */
  fresh: number;
  /** Root map → entry key → its ids on past bases. */
  entries: Map<string, Map<string, Chain>>;
  /** How many storage parts the record takes (to delete the ones a smaller record leaves over). */
  parts: number;
};

export const emptyLive = (): RebaseLive => ({ fresh: -1, entries: new Map(), parts: 0 });

/**
 * The record for rebasing `old` onto a copy written under client id `fresh`: each live entry's
 * item id, after the ids of the chain it continues (its item is the previous rebase's, unwritten since).
 */
export function nextLive(old: Y.Doc, prev: RebaseLive, fresh: number): RebaseLive {
  const entries = new Map<string, Map<string, Chain>>();
  for (const [root, type] of old.share) {
    const out = new Map<string, Chain>();
    for (const [key, item] of type._map) {
      if (item.deleted) continue;
      const id: [number, number] = [item.id.client, item.id.clock + item.length - 1];
      const before = item.id.client === prev.fresh ? (prev.entries.get(root)?.get(key) ?? []) : [];
      out.set(key, [...before.slice(-(MAX_CHAIN - 1)), id]);
    }
    if (out.size > 0) entries.set(root, out);
  }
  return { fresh, entries, parts: prev.parts };
}

/**
 * The ids for a `REBASED` notice (client id → clocks): of the clients in `only` when given
 * (those the notified copy holds), else all.
 */
export function liveIds(live: RebaseLive, only?: ReadonlySet<number>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const byKey of live.entries.values())
    for (const chain of byKey.values())
      for (const [client, clock] of chain) {
        if (only && !only.has(client)) continue;
        const list = out[client] ?? [];
        out[client] = list;
        list.push(clock);
      }
  return out;
}

/** Storage entries for `live` (and the deletion of parts its previous record left over). */
export function liveEntries(doc: string, live: RebaseLive): { put: Record<string, unknown>; drop: string[] } {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, live.fresh);
  encoding.writeVarUint(e, live.entries.size);
  for (const [root, byKey] of live.entries) {
    encoding.writeVarString(e, root);
    encoding.writeVarUint(e, byKey.size);
    for (const [key, chain] of byKey) {
      encoding.writeVarString(e, key);
      encoding.writeVarUint(e, chain.length);
      for (const [client, clock] of chain) {
        encoding.writeVarUint(e, client);
        encoding.writeVarUint(e, clock);
      }
    }
  }
  const parts = split(encoding.toUint8Array(e), PART_BYTES);
  const put: Record<string, unknown> = { [keys.docRebaseLive(doc)]: parts.length };
  parts.forEach((part, i) => {
    put[keys.docRebaseLivePart(doc, i)] = part;
  });
  const drop: string[] = [];
  for (let i = parts.length; i < live.parts; i++) drop.push(keys.docRebaseLivePart(doc, i));
  live.parts = parts.length;
  return { put, drop };
}

/** The stored record of `doc`, or an empty one (never rebased, or unreadable: deletes are then not carried). */
export async function loadLive(storage: KvStorage, doc: string): Promise<RebaseLive> {
  const count = await storage.get<number>(keys.docRebaseLive(doc));
  if (typeof count !== "number" || count <= 0) return emptyLive();
  const parts: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const part = await storage.get<unknown>(keys.docRebaseLivePart(doc, i));
    if (part instanceof Uint8Array) parts.push(part);
    else if (part instanceof ArrayBuffer) parts.push(new Uint8Array(part));
    else return { ...emptyLive(), parts: count };
  }
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.byteLength;
  }
  try {
    const d = decoding.createDecoder(bytes);
    const fresh = decoding.readVarUint(d);
    const entries = new Map<string, Map<string, Chain>>();
    for (let r = decoding.readVarUint(d); r > 0; r--) {
      const root = decoding.readVarString(d);
      const byKey = new Map<string, Chain>();
      for (let k = decoding.readVarUint(d); k > 0; k--) {
        const key = decoding.readVarString(d);
        const chain: Chain = [];
        for (let n = decoding.readVarUint(d); n > 0; n--)
          chain.push([decoding.readVarUint(d), decoding.readVarUint(d)]);
        byKey.set(key, chain);
      }
      entries.set(root, byKey);
    }
    return { fresh, entries, parts: count };
  } catch {
    return { ...emptyLive(), parts: count };
  }
}
