/**
 * The y-partykit baseline: stock `onConnect` from y-partykit with its default options
 * (in-memory document, no persistence), one Yjs document per room.
 */
import type * as Party from "partykit/server";
import { onConnect } from "y-partykit";

export default class YParty implements Party.Server {
  constructor(readonly room: Party.Room) {}

  onConnect(connection: Party.Connection): Promise<void> {
    return onConnect(connection, this.room);
  }
}
