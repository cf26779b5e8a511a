/**
 * The PartyKit main party: one instance per team. Deliberately thin — it adapts PartyKit's
 * callbacks to {@link TeamRoom}, which holds all the logic, and verifies agents' tokens at
 * the edge (`identity.ts`) before the room's object is touched.
 *
 * Hibernating (`hibernate: true`): an idle room's object is dropped while its sockets stay
 * open, and built again by the next message or alarm. `onStart` then hands the open sockets
 * to the room, which rebuilds their sessions from what each socket carries (`resume.ts`).
 */
import type * as Party from "partykit/server";
import { CLOSE_CODES } from "../protocol/index.ts";
import { connectUrlRefusal } from "./admission.ts";
import { docIdleFromEnv } from "./doc-cache.ts";
import { limitsFromEnv } from "./guard.ts";
import {
  authenticate,
  devTokenResponse,
  identityOf,
  isDevTokenPath,
  refusalClose,
  refusalResponse,
  withIdentity,
} from "./identity.ts";
import { keys } from "./keys.ts";
import { TeamRoom } from "./room.ts";

/** workerd's socket pair (a Cloudflare global, not in the DOM typings). */
declare const WebSocketPair: new () => { 0: WebSocket; 1: WebSocket & { accept(): void } };

export default class TeamServer implements Party.Server {
  readonly options: Party.ServerOptions = { hibernate: true };
  #team: TeamRoom | undefined;

  constructor(readonly room: Party.Room) {
    let id: string | undefined;
    try {
      id = room.id;
    } catch {
      // Started by an alarm: PartyKit does not know the id then; `onStart` reads it from storage.
    }
    if (id !== undefined) this.#team = this.#build(id);
  }

  get team(): TeamRoom {
    if (!this.#team) throw new Error("the room has not started");
    return this.#team;
  }

  #build(team: string): TeamRoom {
    const env = this.room.env;
    const window = Number(env.CROSSTALK_LOG_WINDOW);
    const retentionMs = Number(env.CROSSTALK_RETENTION_INTERVAL_MS);
    const memory = Number(env.CROSSTALK_MEMORY_LIMIT_BYTES);
    // Test-only: runs the room's clock this many ms ahead (an agent "offline for days" in a test).
    const skew = Number(env.CROSSTALK_TEST_CLOCK_SKEW_MS ?? 0);
    return new TeamRoom({
      team,
      storage: this.room.storage,
      ...(Number.isFinite(skew) && skew !== 0 ? { now: () => Date.now() + skew } : {}),
      streams: Number.isInteger(window) && window > 0 ? { window } : {},
      retention: Number.isInteger(retentionMs) && retentionMs > 0 ? { intervalMs: retentionMs } : {},
      rebase: env.CROSSTALK_REBASE !== "0",
      ...docIdleFromEnv(env),
      limits: limitsFromEnv(this.room.env),
      ...(Number.isSafeInteger(memory) && memory > 0 ? { memoryLimitBytes: memory } : {}),
      ...(typeof env.CROSSTALK_OTLP_ENDPOINT === "string" && env.CROSSTALK_OTLP_ENDPOINT
        ? { otlpEndpoint: env.CROSSTALK_OTLP_ENDPOINT }
        : {}),
    });
  }

  /**
   * PartyKit admits no connection and delivers no message before this resolves: the team's
   * stored policy is loaded, and after a hibernation the open sockets' sessions are back.
   */
  async onStart(): Promise<void> {
    this.#team ??= this.#build((await this.room.storage.get<string>(keys.roomTeam)) ?? "unknown");
    await this.#team.start();
    await this.#team.resume(this.room.getConnections());
  }

  /** The room's deadlines (token and lease expiry, group ack deadlines) share this one alarm. */
  onAlarm(): void {
    this.#team?.alarm();
  }

  /**
   * Every socket's token is verified here, in the worker, before the room is touched. A
   * refusal is a socket closed with a named code (4401, 4403, 4001), not an HTTP 401: a
   * browser sees a refused upgrade only as 1006 and would retry forever.
   */
  static async onBeforeConnect(
    req: Party.Request,
    lobby: Party.Lobby,
    ctx: Party.ExecutionContext,
  ): Promise<Request | Response> {
    const request = req as unknown as Request;
    const verdict = await authenticate(request, { team: lobby.id, env: lobby.env });
    if (!verdict.ok) {
      const close = refusalClose(verdict.refusal);
      ctx.waitUntil(reportRefusal(lobby, request, close));
      return refuseSocket(close);
    }
    // Refused here rather than in the room: a hibernatable socket the room closes while it is
    // being accepted gets its close frame at once, but workerd ends the TCP connection only
    // ~10 s later (partykit dev 0.0.115), and a Node `ws` client reports the close only then.
    // What the URL alone decides is refused here; a socket count needs the room.
    const unfit = connectUrlRefusal(new URL(request.url).searchParams);
    if (unfit) {
      ctx.waitUntil(reportRefusal(lobby, request, unfit, verdict.identity.agent));
      return refuseSocket(unfit);
    }
    const named = new URL(request.url).searchParams.get("agent");
    if (named !== null && named !== verdict.identity.agent) {
      const { code, reason } = CLOSE_CODES.Forbidden;
      const close = { code, reason: `${reason}: the agent in the URL is not the token's` };
      ctx.waitUntil(reportRefusal(lobby, request, close, verdict.identity.agent));
      return refuseSocket(close);
    }
    // Returned, or PartyKit forwards the original request and the identity is lost.
    return withIdentity(request, verdict.identity);
  }

  /** HTTP: a bearer token (`Authorization` or `?token=`), or 401 with `WWW-Authenticate: Bearer`. */
  static async onBeforeRequest(
    req: Party.Request,
    lobby: Party.Lobby,
    ctx: Party.ExecutionContext,
  ): Promise<Request | Response> {
    const request = req as unknown as Request;
    if (request.method === "GET" && isDevTokenPath(new URL(request.url))) {
      const minted = await devTokenResponse(request, { team: lobby.id, env: lobby.env });
      if (minted) return minted;
    }
    const verdict = await authenticate(request, { team: lobby.id, env: lobby.env });
    if (!verdict.ok) {
      const response = refusalResponse(verdict.refusal);
      ctx.waitUntil(reportRefusal(lobby, request, { code: response.status, reason: verdict.refusal.message }));
      return response;
    }
    const forwarded = withIdentity(request, verdict.identity);
    // Only the edge itself reports refusals to the room.
    forwarded.headers.delete(EDGE_REFUSAL_HEADER);
    return forwarded;
  }

  onConnect(connection: Party.Connection, ctx: Party.ConnectionContext): void {
    const identity = identityOf(ctx.request.headers as unknown as Headers);
    // The edge always sets it; without it this socket did not pass through the edge.
    if (!identity) {
      this.team.audit.record("connection.refused", {
        agent: null,
        code: CLOSE_CODES.Unauthorized.code,
        reason: "no verified identity",
      });
      return connection.close(CLOSE_CODES.Unauthorized.code, "unauthorized: no verified identity");
    }
    this.team.connect(connection, new URL(ctx.request.url), identity);
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
    const request = req as unknown as Request;
    const refusal = request.headers.get(EDGE_REFUSAL_HEADER);
    if (refusal !== null) {
      // Sent by the edge (`reportRefusal`): external requests never carry this header.
      try {
        const { agent, verified, code, reason, unreported } = JSON.parse(refusal) as {
          agent: string | null;
          verified?: string;
          code: number;
          reason: string;
          unreported?: number;
        };
        this.team.audit.record("connection.refused", {
          agent: verified ?? null,
          claimed: agent,
          code,
          reason,
          at: "edge",
          // Refusals the edge only counted since its last report (it reports a few per second).
          ...(typeof unreported === "number" && unreported > 0 ? { unreported } : {}),
        });
      } catch {
        // Not ours to answer.
      }
      return Promise.resolve(new Response(null, { status: 204 }));
    }
    const identity = identityOf(request.headers);
    const principal = identity
      ? { agent: identity.agent, role: identity.role, ...(identity.scope ? { scope: identity.scope } : {}) }
      : null;
    return this.team.request(request, principal);
  }
}

/** Carries a refusal from the edge to the team's room, for its audit stream. */
const EDGE_REFUSAL_HEADER = "x-crosstalk-edge-refusal";

/**
 * The edge refused a socket or request: tell the room (in the background), so the audit
 * stream has it. The agent named in the URL is unverified, and recorded as `claimed`; `verified`
 * is the token's agent when the token was good but did not admit this socket.
 */
/** Refusal reports one edge isolate sends the room per second, at most (`reportRefusal`). */
const EDGE_REPORTS_PER_SECOND = 10;
const reports = { windowStart: 0, sent: 0, unreported: 0 };

async function reportRefusal(
  lobby: Party.Lobby,
  request: Request,
  close: { code: number; reason: string },
  verified?: string,
): Promise<void> {
  // Unauthenticated traffic must not be able to keep the team's room awake: past a few reports
  // a second from this edge isolate, refusals are only counted, and the next report says how many.
  const now = Date.now();
  if (now - reports.windowStart >= 1000) {
    reports.windowStart = now;
    reports.sent = 0;
  }
  if (reports.sent >= EDGE_REPORTS_PER_SECOND) {
    reports.unreported++;
    return;
  }
  reports.sent++;
  const unreported = reports.unreported;
  reports.unreported = 0;
  try {
    const agent = new URL(request.url).searchParams.get("agent");
    const stub = lobby.parties.main?.get(lobby.id);
    const body = JSON.stringify({
      agent: agent?.slice(0, 128) ?? null,
      ...(verified !== undefined ? { verified } : {}),
      code: close.code,
      reason: close.reason.slice(0, 200),
      ...(unreported > 0 ? { unreported } : {}),
    });
    await stub?.fetch({ method: "POST", headers: { [EDGE_REFUSAL_HEADER]: body } });
  } catch (error) {
    console.error("[crosstalk] a refusal could not be audited", error);
  }
}

/** A socket accepted only to be closed with `close`: how a browser learns why it was refused. */
function refuseSocket(close: { code: number; reason: string }): Response {
  const pair = new WebSocketPair();
  const [client, server] = [pair[0], pair[1]];
  server.accept();
  server.close(close.code, close.reason);
  return new Response(null, { status: 101, webSocket: client } as ResponseInit);
}

function closeQuietly(connection: Party.Connection): void {
  try {
    connection.close();
  } catch {
    // Already closed.
  }
}
