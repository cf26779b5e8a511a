/**
 * Admission: who a socket is, from connect to close. The identity is what the host verified
 * from the agent's signed token (`identity.ts`), else (in-process hosts only) the connect
 * URL's query (`agent`, `role`); with `_pk` = client instance and `v` = protocol version, it
 * is stamped on the session, never taken from frames (`policy.ts` decides what it may do).
 * A signed session lives until its token's `exp`: one deadline per session on the room's alarm
 * schedule (`alarms.ts`) closes it with `TokenExpired` (4001), and the client comes back with
 * a fresh token. After a hibernation wake, {@link Admission.resume} rebuilds a session from
 * what its socket carried (`resume.ts`), without a second welcome. Also the sessions'
 * registry, and the `leave` frame, which ends a session on purpose.
 */
import {
  CLOSE_CODES,
  docNameSchema,
  type Grants,
  type Identity,
  nameSchema,
  PROTOCOL_VERSION,
  type RoomLimits,
} from "../protocol/index.ts";
import type { Alarms } from "./alarms.ts";
import type { RoomModule } from "./handlers.ts";
import type { Metrics } from "./metrics.ts";
import type { Presence } from "./presence.ts";
import { ANONYMOUS_WRITER, RawDocSession, Session, type SessionInit, type Socket } from "./session.ts";

export type AdmissionOptions = {
  team: string;
  now: () => number;
  metrics: Metrics;
  presence: Presence;
  /** How many sockets an agent id may hold; how large a reassembled frame may get. */
  limits: Pick<RoomLimits, "maxConnectionsPerAgent" | "maxUpdateBytes" | "maxUnreadBytes">;
  /** The effective permissions of an admitted session under the team's policy (`team-policy.ts`). */
  grants: (who: Session) => Grants;
  /**
   * Right after the welcome, before any other frame of the session: hand back what was in
   * flight for this agent (in-doubt calls). Synchronous, so nothing else sees the session first.
   */
  admitted: (session: Session) => void;
  /** After the welcome, in the session's frame order: hand the agent what waited for it (its inbox). */
  welcomed: (session: Session) => Promise<void>;
  /** A session ended: release what it held in the other modules (documents, calls, group leases). */
  gone: (session: Session) => void;
  /** A socket was refused at admission (the room audits it). */
  refused?: (refusal: { agent: string | null; code: number; reason: string }) => void;
  /** A newer signed connection took `older`'s agent id over (the room audits it). */
  takenOver?: (older: Session, newer: Session) => void;
  /** The room's alarm schedule, which holds each session's token expiry. */
  alarms: Alarms;
};

/** What a session is, as its socket carries it across a hibernation (`resume.ts`). */
export type SessionIdentity = {
  agent: string;
  role: string;
  instance: string;
  connectedAt: number;
  scope?: readonly string[];
  expiresAt?: number;
  writer?: string;
  /** A stock Yjs client's one document. */
  doc?: string;
  /** The client reports what it reads (`flow=1`): the session is held to the unread budget. */
  flow?: true;
};

/**
 * What the connect URL alone refuses (a protocol version this room does not speak, a stock
 * Yjs client's document name that is not one): the room checks it at admission, and a host
 * that can refuse at its edge does it there first, before the room is touched (`server.ts`).
 */
export function connectUrlRefusal(q: URLSearchParams): { code: number; reason: string } | null {
  const { code, reason } = CLOSE_CODES.BadRequest;
  const version = Number(q.get("v") ?? PROTOCOL_VERSION);
  if (version !== PROTOCOL_VERSION)
    return { code, reason: `${reason}: invalid protocol version ${version} (this room speaks ${PROTOCOL_VERSION})` };
  if (q.has("doc") && !docNameSchema.safeParse(q.get("doc")).success)
    return { code, reason: `${reason}: invalid doc or agent` };
  return null;
}

export class Admission {
  readonly #sessions = new Map<Socket, Session>();
  #nextSession = 0;

  constructor(private readonly options: AdmissionOptions) {}

  /** Open sockets: agents and stock Yjs clients. */
  get size(): number {
    return this.#sessions.size;
  }

  get(socket: Socket): Session | undefined {
    return this.#sessions.get(socket);
  }

  sessions(): IterableIterator<Session> {
    return this.#sessions.values();
  }

  /**
   * Admits a socket, or closes it with the reason; the welcome frame opens an agent's session.
   * `identity` is what the host verified from the agent's signed token (`identity.ts`); with
   * it, agent and role come from the token only, and a URL `agent` that differs is refused.
   */
  connect(socket: Socket, url: URL, identity?: Identity): Session | null {
    const q = url.searchParams;
    if (identity && q.has("agent") && q.get("agent") !== identity.agent) {
      return this.#refuse(
        socket,
        identity.agent,
        CLOSE_CODES.Forbidden.code,
        `${CLOSE_CODES.Forbidden.reason}: the agent in the URL is not the token's`,
      );
    }
    if (identity?.expiresAt !== undefined && identity.expiresAt <= this.options.now()) {
      return this.#refuse(socket, identity.agent, CLOSE_CODES.TokenExpired.code, CLOSE_CODES.TokenExpired.reason);
    }
    const session = q.has("doc") ? this.#connectRaw(socket, q, identity) : this.#connectAgent(socket, q, identity);
    if (session?.expiresAt !== undefined) this.#expireAt(session, session.expiresAt);
    return session;
  }

  /**
   * An agent: on the roster, welcomed. A signed agent id held by another client instance is
   * taken over (the older socket closes with `TakenOver`, fatal for it: the last one in
   * wins, and the two never trade the id back and forth); an unsigned one is refused.
   */
  #connectAgent(socket: Socket, q: URLSearchParams, identity?: Identity): Session | null {
    const { now, metrics, presence } = this.options;
    const agent = nameSchema.safeParse(identity?.agent ?? q.get("agent"));
    const role = nameSchema.safeParse(identity?.role ?? q.get("role") ?? "agent");
    const version = Number(q.get("v") ?? PROTOCOL_VERSION);
    if (!agent.success || !role.success || version !== PROTOCOL_VERSION) {
      const why = !agent.success
        ? "agent"
        : !role.success
          ? "role"
          : `protocol version ${version} (this room speaks ${PROTOCOL_VERSION})`;
      const named = identity?.agent ?? q.get("agent");
      return this.#refuse(
        socket,
        named,
        CLOSE_CODES.BadRequest.code,
        `${CLOSE_CODES.BadRequest.reason}: invalid ${why}`,
      );
    }
    const instance = q.get("_pk") ?? `anon-${this.#nextSession + 1}`;
    // Every version-2 client reports its reads (and says so with `flow=1`); one that does not is
    // held to the unread budget all the same: a socket nobody reads must not grow the room.
    const session = new Session({
      maxFrameBytes: this.options.limits.maxUpdateBytes,
      n: ++this.#nextSession,
      socket,
      agent: agent.data,
      role: role.data,
      instance,
      connectedAt: now(),
      metrics,
      ...(identity?.scope ? { scope: identity.scope } : {}),
      ...(identity?.expiresAt !== undefined ? { expiresAt: identity.expiresAt } : {}),
      ...this.#budget(),
      ...(q.get("batch") === "1" ? { batches: true } : {}),
    });
    session.grants = this.options.grants(session);
    const admitted = presence.admit(session, { takeover: identity !== undefined });
    if (!admitted.ok) {
      const { code, reason } = CLOSE_CODES.AgentIdInUse;
      return this.#refuse(socket, agent.data, code, `${reason}: ${agent.data}`);
    }
    const older = admitted.replaced;
    if (older) this.drop(older, older.instance === instance ? CLOSE_CODES.Replaced : CLOSE_CODES.TakenOver);
    if (older && older.instance !== instance) this.options.takenOver?.(older, session);
    this.#sessions.set(socket, session);
    metrics.connects.inc({ agent: session.agent });
    session.sendFrame({
      type: "welcome",
      protocol: PROTOCOL_VERSION,
      agent: session.agent,
      role: session.role,
      serverTime: now(),
      roster: presence.roster(),
      permissions: session.grants.permissions,
      unreadBudget: session.unreadBudget,
      batches: true,
    });
    this.options.admitted(session);
    // Messages that waited in the inbox follow the welcome, in the session's frame order.
    session.enqueue(() =>
      this.options.welcomed(session).catch((error: unknown) => {
        console.error(`[crosstalk ${this.options.team}] inbox of ${session.agent} not delivered`, error);
      }),
    );
    return session;
  }

  /** A stock Yjs provider for one document: same document permissions, no agent identity. */
  #connectRaw(socket: Socket, q: URLSearchParams, identity?: Identity): Session | null {
    const doc = docNameSchema.safeParse(q.get("doc"));
    const named = identity?.agent ?? q.get("agent");
    const agent = nameSchema.safeParse(named ?? `yjs-${this.#nextSession + 1}`);
    if (!doc.success || !agent.success) {
      const { code, reason } = CLOSE_CODES.BadRequest;
      return this.#refuse(socket, named, code, `${reason}: invalid doc or agent`);
    }
    // Stock Yjs providers add sockets without taking one over: an agent id holds a bounded number.
    let held = 0;
    for (const s of this.#sessions.values()) if (s.agent === agent.data && !s.closed) held++;
    if (held >= this.options.limits.maxConnectionsPerAgent) {
      const { code, reason } = CLOSE_CODES.TooManyConnections;
      return this.#refuse(socket, agent.data, code, `${reason}: ${agent.data} holds ${held} (maxConnectionsPerAgent)`);
    }
    const init = {
      maxFrameBytes: this.options.limits.maxUpdateBytes,
      n: ++this.#nextSession,
      socket,
      agent: agent.data,
      connectedAt: this.options.now(),
      metrics: this.options.metrics,
      ...(identity?.scope ? { scope: identity.scope } : {}),
      ...(identity?.expiresAt !== undefined ? { expiresAt: identity.expiresAt } : {}),
      ...(named === null ? { writer: ANONYMOUS_WRITER } : {}),
      // A stock client with a token is held to its token's role, deny rules included.
      ...(identity ? { role: identity.role } : {}),
    };
    const session = new RawDocSession(init, doc.data);
    session.grants = this.options.grants(session);
    this.#sessions.set(socket, session);
    return session;
  }

  /** What holds an agent's session to the unread budget (`flow.ts`). */
  #budget(): Pick<SessionInit, "unreadBudget" | "tooSlow"> {
    return {
      unreadBudget: this.options.limits.maxUnreadBytes,
      tooSlow: (session) => {
        this.options.metrics.slowReaders.inc({ agent: session.agent });
        this.drop(session, CLOSE_CODES.SlowReader);
      },
    };
  }

  #refuse(socket: Socket, agent: string | null, code: number, reason: string): null {
    socket.close(code, reason);
    // The agent may be an unparsable URL parameter: what is recorded stays bounded.
    this.options.refused?.({ agent: agent?.slice(0, 128) ?? null, code, reason: reason.slice(0, 300) });
    return null;
  }

  /** The socket closed (or failed). */
  close(socket: Socket): void {
    const session = this.#sessions.get(socket);
    if (session) this.drop(session, null);
  }

  /** Ends a session once: closes its socket (with `close`), releases what it held, takes it off the roster. */
  drop(session: Session, close: { code: number; reason: string } | null): void {
    if (session.closed) return;
    if (session.expiresAt !== undefined) this.options.alarms.cancel(expiryKey(session));
    // What it was sent before (a refusal, `leave`'s answer) leaves before the close.
    session.flush();
    if (close) session.socket.close(close.code, close.reason);
    session.closed = true;
    this.#sessions.delete(session.socket);
    this.options.gone(session);
    this.options.presence.remove(session);
  }

  /** Ends `session` with `TokenExpired` when its token's `exp` passes. */
  #expireAt(session: Session, expiresAt: number): void {
    if (expiresAt <= this.options.now()) return this.drop(session, CLOSE_CODES.TokenExpired);
    this.options.alarms.at(expiryKey(session), expiresAt, () => this.#expireAt(session, expiresAt));
  }

  /**
   * A socket the room accepted before it hibernated: its session again, as it was (no
   * welcome, no roster announcement: the agent and its peers never saw it leave).
   */
  resume(socket: Socket, who: SessionIdentity): Session | null {
    if (who.expiresAt !== undefined && who.expiresAt <= this.options.now()) {
      socket.close(CLOSE_CODES.TokenExpired.code, CLOSE_CODES.TokenExpired.reason);
      return null;
    }
    const init = {
      maxFrameBytes: this.options.limits.maxUpdateBytes,
      n: ++this.#nextSession,
      socket,
      agent: who.agent,
      role: who.role,
      connectedAt: who.connectedAt,
      metrics: this.options.metrics,
      ...(who.scope ? { scope: who.scope } : {}),
      ...(who.expiresAt !== undefined ? { expiresAt: who.expiresAt } : {}),
      ...(who.writer !== undefined ? { writer: who.writer } : {}),
    };
    const parsedDoc = who.doc === undefined ? null : docNameSchema.safeParse(who.doc);
    if (parsedDoc && !parsedDoc.success) return null;
    const session = parsedDoc
      ? new RawDocSession(init, parsedDoc.data)
      : new Session({ ...init, instance: who.instance, ...(who.flow ? this.#budget() : {}) });
    session.grants = this.options.grants(session);
    if (!parsedDoc) this.options.presence.restore(session);
    this.#sessions.set(socket, session);
    if (session.expiresAt !== undefined) this.#expireAt(session, session.expiresAt);
    return session;
  }

  /** What `session` is, for its socket to carry across a hibernation. */
  identityOf(session: Session): SessionIdentity {
    return {
      agent: session.agent,
      role: session.role,
      instance: session.instance,
      connectedAt: session.connectedAt,
      ...(session.scope ? { scope: session.scope } : {}),
      ...(session.expiresAt !== undefined ? { expiresAt: session.expiresAt } : {}),
      ...(session.writer !== session.agent ? { writer: session.writer } : {}),
      ...(session instanceof RawDocSession ? { doc: session.doc } : {}),
      ...(session.unreadBudget !== Number.POSITIVE_INFINITY ? { flow: true as const } : {}),
    };
  }

  /** Closes every socket: the room can no longer trust its memory. */
  closeAll(code: number, reason: string): void {
    for (const s of this.#sessions.values()) s.socket.close(code, reason);
  }

  /** `leave`: answered first, then the session ends, so the id is free when the client closes. */
  readonly module: RoomModule<"leave"> = {
    frames: { leave: (session) => ({ reply: {}, afterwards: () => this.drop(session, null) }) },
  };
}

const expiryKey = (session: Session): string => `exp|${session.n}`;
