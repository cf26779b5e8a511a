/**
 * The room on Cloudflare's maintained stack: a `partyserver` Durable Object under wrangler,
 * for teams deploying to their own Cloudflare account (`wrangler.jsonc` binds it; see the
 * README). As thin as the PartyKit adapter (`server.ts`), over the same {@link TeamRoom}, and
 * it verifies tokens at the edge with the same code (`TeamServer.onBeforeConnect`), in
 * `routePartykitRequest`'s hooks, before the object is touched.
 *
 * Differences from PartyKit it adapts: `onMessage(connection, message)` takes the connection
 * first; the room's name is `this.name`; env holds bindings besides the variables.
 */
import { type Connection, type ConnectionContext, routePartykitRequest, Server } from "partyserver";
import { CLOSE_CODES, PING_FRAME, PONG_FRAME } from "../protocol/index.ts";
import { docIdleFromEnv } from "./doc-cache.ts";
import { limitsFromEnv } from "./guard.ts";
import { identityOf } from "./identity.ts";
import { type RoomOptions, TeamRoom } from "./room.ts";
import TeamServer from "./server.ts";

type Env = Record<string, unknown>;

/** workerd's auto-response pair (a Cloudflare global, absent from the DOM typings). */
declare const WebSocketRequestResponsePair: (new (request: string, response: string) => unknown) | undefined;

/** The Durable Object class: bind it as `Main` (the `/parties/main/<team>` path PartyKit uses too). */
export class TeamParty extends Server<Env> {
  static override options = { hibernate: true };
  #team: TeamRoom | undefined;

  get team(): TeamRoom {
    // `ctx` and `env` are typed by @cloudflare/workers-types, which crosstalk does not install.
    const { ctx, env } = this as unknown as { ctx: { storage: RoomOptions["storage"] }; env: Env };
    this.#team ??= new TeamRoom({
      team: this.name,
      storage: ctx.storage,
      ...logWindow(env),
      limits: limitsFromEnv(env),
      rebase: env.CROSSTALK_REBASE !== "0",
      ...docIdleFromEnv(env),
    });
    return this.#team;
  }

  override async onStart(): Promise<void> {
    // The runtime answers the heartbeat's fixed ping itself, so pings never wake the object.
    const { ctx } = this as unknown as { ctx: { setWebSocketAutoResponse?: (pair: unknown) => void } };
    if (typeof WebSocketRequestResponsePair === "function" && ctx.setWebSocketAutoResponse)
      ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
    await this.team.start();
    await this.team.resume(this.getConnections());
  }

  override onConnect(connection: Connection, ctx: ConnectionContext): void {
    const identity = identityOf(ctx.request.headers);
    if (!identity) return connection.close(CLOSE_CODES.Unauthorized.code, "unauthorized: no verified identity");
    this.team.connect(connection, new URL(ctx.request.url), identity);
  }

  override onMessage(connection: Connection, message: string | ArrayBuffer | ArrayBufferView): void {
    this.team.message(connection, message);
  }

  override onClose(connection: Connection): void {
    this.team.close(connection);
  }

  override onError(connection: Connection): void {
    this.team.close(connection);
  }

  override onRequest(request: Request): Promise<Response> {
    const identity = identityOf(request.headers);
    const principal = identity
      ? { agent: identity.agent, role: identity.role, ...(identity.scope ? { scope: identity.scope } : {}) }
      : null;
    return this.team.request(request, principal);
  }

  override onAlarm(): void {
    this.team.alarm();
  }
}

function logWindow(env: Env): { streams?: { window: number } } {
  const window = Number(env.CROSSTALK_LOG_WINDOW);
  return Number.isInteger(window) && window > 0 ? { streams: { window } } : {};
}

/** The worker: routes `/parties/main/<team>…` to the team's object, verifying tokens first. */
export default {
  async fetch(request: Request, env: Env, ctx: { waitUntil(promise: Promise<unknown>): void }): Promise<Response> {
    // No `parties` here: the edge's refusals are not reported to this host's audit stream.
    const lobbyOf = (lobby: { name: string }) => ({ id: lobby.name, env }) as never;
    const routed = await routePartykitRequest(request, env as never, {
      onBeforeConnect: (req, lobby) => TeamServer.onBeforeConnect(req as never, lobbyOf(lobby), ctx as never),
      onBeforeRequest: (req, lobby) => TeamServer.onBeforeRequest(req as never, lobbyOf(lobby), ctx as never),
    });
    return routed ?? new Response("not found", { status: 404 });
  },
};
