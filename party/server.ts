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

  /** PartyKit admits no connection before this resolves: the team's stored policy is loaded first. */
  onStart(): Promise<void> {
    return this.team.start();
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
    return this.team.request(req as unknown as Request, openRoomPrincipal(new URL(req.url)));
  }
}

/**
 * Until the edge verifies tokens (the identity half of #15 replaces this with the verified
 * principal, null without a token), an HTTP request is who its query says, as sockets are:
 * `?agent=&role=`, and without them the team's operator (`admin`), which is what an
 * unauthenticated room has always granted. The policy then applies to that role.
 */
function openRoomPrincipal(url: URL): { agent: string; role: string } {
  const q = url.searchParams;
  return { agent: q.get("agent") ?? "http", role: q.get("role") ?? "admin" };
}

function closeQuietly(connection: Party.Connection): void {
  try {
    connection.close();
  } catch {
    // Already closed.
  }
}
