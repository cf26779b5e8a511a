/**
 * The demo team's legal agent, running inside a worker: the `legal` party of this project
 * (partykit.json `parties`), one instance per team, that connects to the team room as an
 * ordinary agent (`legal-worker`, role `legal`) over workerd's own WebSocket.
 *
 * `POST /parties/legal/<team>` starts it (idempotent; `npm start` and the tests call it). It
 * mints its own token with the room's HS256 key, so it exists only in development mode
 * (`CROSSTALK_DEV=1` with `CROSSTALK_HS256_SECRET`, as `npm start` runs): a deployed room
 * without them answers 404 here.
 */
import type * as Party from "partykit/server";
import { connect } from "../client/index.ts";
import { signAgentToken } from "../protocol/token.ts";
import { HostedAgent } from "./team/host.ts";

const AGENT = "legal-worker";
const ROLE = "legal";

export default class LegalParty implements Party.Server {
  #agent: HostedAgent | null = null;
  #starting: Promise<unknown> | null = null;
  #errors: string[] = [];

  constructor(readonly room: Party.Room) {}

  #secret(): string | null {
    const env = this.room.env;
    const dev = env.CROSSTALK_DEV === "1" || env.CROSSTALK_DEV === "true";
    const secret = typeof env.CROSSTALK_HS256_SECRET === "string" ? env.CROSSTALK_HS256_SECRET : "";
    return dev && secret ? secret : null;
  }

  async onRequest(req: Party.Request): Promise<Response> {
    const secret = this.#secret();
    if (!secret) return new Response("not found", { status: 404 });
    if (req.method === "GET")
      return Response.json({ agent: AGENT, status: this.#agent?.team?.status ?? "down", errors: this.#errors });
    if (req.method !== "POST") return new Response("method not allowed", { status: 405 });
    try {
      this.#starting ??= this.#start(new URL(req.url).host, secret);
      await this.#starting;
      return Response.json({ ok: true, agent: AGENT });
    } catch (error) {
      this.#starting = null;
      return Response.json({ ok: false, error: String(error) }, { status: 500 });
    }
  }

  async #start(host: string, secret: string): Promise<void> {
    const team = this.room.id;
    const key = new TextEncoder().encode(secret);
    const issuer = typeof this.room.env.CROSSTALK_ISSUER === "string" ? this.room.env.CROSSTALK_ISSUER : "";
    this.#agent = new HostedAgent({
      connect,
      base: {
        host,
        team,
        token: () =>
          signAgentToken({
            key,
            alg: "HS256",
            team,
            agent: AGENT,
            role: ROLE,
            ttl: 3600,
            now: Date.now(),
            ...(issuer ? { issuer } : {}),
          }),
      },
      WebSocket,
      agent: AGENT,
      role: ROLE,
      agentOptions: {
        runs: "worker",
        // The last few, for `GET /parties/legal/<team>`.
        onError: (e) => {
          this.#errors.push(String(e));
          if (this.#errors.length > 10) this.#errors.shift();
        },
      },
    });
    await this.#agent.start();
  }
}
