/**
 * The PartyKit main party: one instance per team. Deliberately thin — it adapts PartyKit's
 * callbacks to {@link TeamRoom}, which holds all the logic.
 */
import type * as Party from "partykit/server";
import { TeamRoom } from "./room.ts";

export default class TeamServer implements Party.Server {
  readonly team: TeamRoom;

  constructor(readonly room: Party.Room) {
    const window = Number(room.env.CROSSTALK_LOG_WINDOW);
    this.team = new TeamRoom({
      team: room.id,
      storage: room.storage,
      streams: Number.isInteger(window) && window > 0 ? { window } : {},
    });
  }

  onConnect(connection: Party.Connection, ctx: Party.ConnectionContext): void {
    this.team.connect(connection, new URL(ctx.request.url));
  }

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection): void {
    this.team.message(sender, message);
  }

  onClose(connection: Party.Connection): void {
    this.team.close(connection);
    // Answer the client's close handshake, or a Node `ws` client waits 30 s for it.
    closeQuietly(connection);
  }

  onError(connection: Party.Connection): void {
    this.team.close(connection);
    closeQuietly(connection);
  }

  onRequest(req: Party.Request): Promise<Response> {
    return this.team.request(req as unknown as Request);
  }
}

function closeQuietly(connection: Party.Connection): void {
  try {
    connection.close();
  } catch {
    // Already closed.
  }
}
