/**
 * One team's room, independent of the host: the PartyKit class in `server.ts` only adapts
 * connections, messages and requests to this. The same object could sit in partyserver or
 * a raw Durable Object.
 */
import {
  CLOSE_CODES,
  type ClientFrame,
  decodeDocFrame,
  type ErrorBody,
  nameSchema,
  PROTOCOL_VERSION,
  parseClientFrame,
} from "../client/protocol.ts";
import { DocHub } from "./docs.ts";
import { type agentInfo, Presence } from "./presence.ts";
import { Router } from "./rpc.ts";
import { Session, type Socket } from "./session.ts";
import type { KvStorage } from "./storage.ts";
import { Streams } from "./streams.ts";

export type RoomOptions = {
  team: string;
  storage: KvStorage;
  now?: () => number;
  /** Called when the room can no longer trust its memory (storage failed). */
  onFatal?: (error: unknown) => void;
};

export class TeamRoom {
  readonly team: string;
  readonly presence = new Presence();
  readonly hub: DocHub;
  readonly streams: Streams;
  readonly router: Router;
  readonly #now: () => number;
  readonly #sessions = new Map<Socket, Session>();
  #nextSession = 0;

  constructor(options: RoomOptions) {
    this.team = options.team;
    this.#now = options.now ?? Date.now;
    this.hub = new DocHub(options.storage, (error) => {
      console.error(`[crosstalk ${this.team}] storage failed; dropping all connections`, error);
      for (const s of this.#sessions.values()) s.socket.close(1011, "storage failure");
      options.onFatal?.(error);
    });
    this.streams = new Streams(this.hub, this.#now);
    this.router = new Router(this.presence, this.#now);
  }

  /**
   * Admits a socket. The identity comes from the connect URL's query (`agent`, `role`,
   * `_pk` = client instance, `v` = protocol version); authentication will stamp it from a
   * signed token instead.
   */
  connect(socket: Socket, url: URL): Session | null {
    const q = url.searchParams;
    const agent = nameSchema.safeParse(q.get("agent"));
    const role = nameSchema.safeParse(q.get("role") ?? "agent");
    const version = Number(q.get("v") ?? PROTOCOL_VERSION);
    if (!agent.success || !role.success || version !== PROTOCOL_VERSION) {
      const why = !agent.success ? "agent" : !role.success ? "role" : `protocol version ${version}`;
      socket.close(CLOSE_CODES.BadRequest.code, `${CLOSE_CODES.BadRequest.reason}: invalid ${why}`);
      return null;
    }
    const instance = q.get("_pk") ?? `anon-${this.#nextSession + 1}`;
    const session = new Session(++this.#nextSession, socket, agent.data, role.data, instance, this.#now());
    const admitted = this.presence.admit(session);
    if (!admitted.ok) {
      socket.close(CLOSE_CODES.AgentIdInUse.code, `${CLOSE_CODES.AgentIdInUse.reason}: ${agent.data}`);
      return null;
    }
    if (admitted.replaced) this.#drop(admitted.replaced, CLOSE_CODES.Replaced);
    this.#sessions.set(socket, session);
    session.sendFrame({
      type: "welcome",
      protocol: PROTOCOL_VERSION,
      agent: session.agent,
      role: session.role,
      serverTime: this.#now(),
      roster: this.presence.roster(),
    });
    return session;
  }

  /** Routes one message; frames of a session are handled strictly in arrival order. */
  message(socket: Socket, data: string | ArrayBuffer | ArrayBufferView): void {
    const session = this.#sessions.get(socket);
    if (!session) return;
    session.queue = session.queue.then(() =>
      this.#handle(session, data).catch((error: unknown) => {
        console.error(`[crosstalk ${this.team}] frame from ${session.agent} failed`, error);
        this.#refuse(session, { code: "INTERNAL", message: "the room failed to handle this frame" });
      }),
    );
  }

  close(socket: Socket): void {
    const session = this.#sessions.get(socket);
    if (session) this.#drop(session, null);
  }

  #drop(session: Session, close: { code: number; reason: string } | null): void {
    if (session.closed) return;
    if (close) session.socket.close(close.code, close.reason);
    session.closed = true;
    this.#sessions.delete(session.socket);
    this.hub.closeAll(session);
    this.router.gone(session);
    this.presence.remove(session);
  }

  #refuse(session: Session, error: ErrorBody, extra: { ref?: string; doc?: string } = {}): void {
    session.sendFrame({ type: "error", ...extra, error });
  }

  async #handle(session: Session, data: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    if (typeof data !== "string") {
      const bytes =
        data instanceof ArrayBuffer
          ? new Uint8Array(data)
          : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const whole = session.reassembler.push(bytes);
      if (!whole.ok) return this.#refuse(session, whole.error);
      if (!whole.frame) return;
      const decoded = decodeDocFrame(whole.frame);
      if (!decoded.ok) return this.#refuse(session, decoded.error);
      const error = await this.hub.receive(session, decoded.frame.doc, decoded.frame.decoder);
      if (error) this.#refuse(session, error, { doc: decoded.frame.doc });
      return;
    }
    const parsed = parseClientFrame(data);
    if (!parsed.ok) return this.#refuse(session, parsed.error, { ref: parsed.ref });
    await this.#dispatch(session, parsed.frame);
  }

  async #dispatch(session: Session, frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case "publish":
        return this.streams.publish(session, frame);
      case "doc.close":
        return this.hub.close(session, frame.doc);
      case "rpc.handle":
        session.methods = [...new Set(frame.methods)];
        return this.presence.changed(session);
      case "rpc.call":
        return this.router.call(session, frame);
      case "rpc.cancel":
        return this.router.cancel(session, frame.ref);
      case "rpc.result": {
        const error = this.router.result(session, frame);
        if (error) this.#refuse(session, error);
        return;
      }
      case "presence.set":
        session.status = frame.status;
        return this.presence.changed(session);
      default: {
        const unreachable: never = frame;
        return unreachable;
      }
    }
  }

  /** A summary for `GET /parties/main/<team>`. */
  info(): { team: string; agents: ReturnType<typeof agentInfo>[]; inFlightCalls: number } {
    return { team: this.team, agents: this.presence.roster(), inFlightCalls: this.router.inFlight };
  }
}
