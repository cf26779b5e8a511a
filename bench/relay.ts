/**
 * The bare-relay baseline: a party that forwards JSON text frames and does nothing else.
 * A frame `{ "to": "<connection id>", ... }` goes to that connection (its `_pk` query
 * parameter); `"to": "*"` goes to every other connection. No validation, no storage.
 */
import type * as Party from "partykit/server";

export default class Relay implements Party.Server {
  constructor(readonly room: Party.Room) {}

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection): void {
    if (typeof message !== "string") return;
    let to: unknown;
    try {
      to = (JSON.parse(message) as { to?: unknown }).to;
    } catch {
      return;
    }
    this.forward(message, to, sender);
  }

  /** Sends `message` where its `to` says: one connection, or everyone but the sender. */
  protected forward(message: string, to: unknown, sender: Party.Connection): void {
    if (to === "*") this.room.broadcast(message, [sender.id]);
    else if (typeof to === "string") this.room.getConnection(to)?.send(message);
  }
}
