/**
 * One team's room, independent of the host: the PartyKit class in `server.ts` only adapts
 * connections, messages and requests to this. The same object could sit in partyserver or
 * a raw Durable Object.
 */
import * as decoding from "lib0/decoding";
import * as Y from "yjs";
import {
  CLOSE_CODES,
  type ClientFrame,
  DEFAULT_LOG_WINDOW,
  DLQ_SUFFIX,
  decodeDocFrame,
  docNameSchema,
  type ErrorBody,
  eventNode,
  nameSchema,
  PROTOCOL_VERSION,
  parseClientFrame,
  type TraceItem,
  Y_MESSAGE_AWARENESS,
  Y_MESSAGE_SYNC,
} from "../protocol/index.ts";
import { Consumers } from "./consumers.ts";
import type { RoomContext } from "./context.ts";
import { DocHub } from "./docs.ts";
import { Inbox } from "./inbox.ts";
import { Leases } from "./leases.ts";
import { type GaugeSample, Metrics } from "./metrics.ts";
import { type agentInfo, Presence } from "./presence.ts";
import { Router, type RouterOptions } from "./rpc.ts";
import { RawDocSession, Session, type Socket } from "./session.ts";
import { SharedState } from "./state.ts";
import type { KvStorage } from "./storage.ts";
import { type StreamOptions, Streams } from "./streams.ts";
import { TraceLog } from "./trace.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

export type RoomOptions = {
  team: string;
  storage: KvStorage;
  /** Stream tuning; defaults suit most teams. */
  streams?: Partial<StreamOptions>;
  /** Call and message tuning. */
  rpc?: Partial<RouterOptions> & { inboxTtlMs?: number };
  now?: () => number;
  /** Called when the room can no longer trust its memory (storage failed). */
  onFatal?: (error: unknown) => void;
};

export class TeamRoom {
  readonly team: string;
  readonly presence = new Presence();
  readonly metrics = new Metrics();
  readonly traces = new TraceLog();
  readonly hub: DocHub;
  readonly streams: Streams;
  readonly router: Router;
  readonly consumers: Consumers;
  readonly inbox: Inbox;
  readonly state: SharedState;
  readonly leases: Leases;
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
    const ctx: RoomContext = {
      storage: options.storage,
      now: this.#now,
      metrics: this.metrics,
      presence: this.presence,
      hub: this.hub,
    };
    this.streams = new Streams(ctx, {
      window: DEFAULT_LOG_WINDOW,
      dedupeWindowMs: DAY_MS,
      dedupeMaxIds: 100_000,
      ...options.streams,
    });
    this.consumers = new Consumers(ctx, this.streams);
    this.router = new Router(
      ctx,
      { idempotencyWindowMs: DAY_MS, defaultMaxInFlight: 256, ...options.rpc },
      this.traces,
    );
    this.state = new SharedState(ctx);
    this.leases = new Leases(ctx);
    this.inbox = new Inbox(ctx, options.rpc?.inboxTtlMs ?? DAY_MS);
  }

  /**
   * Admits a socket. The identity comes from the connect URL's query (`agent`, `role`,
   * `_pk` = client instance, `v` = protocol version); authentication will stamp it from a
   * signed token instead.
   */
  connect(socket: Socket, url: URL): Session | null {
    const q = url.searchParams;
    if (q.has("doc")) return this.#connectRaw(socket, q);
    const agent = nameSchema.safeParse(q.get("agent"));
    const role = nameSchema.safeParse(q.get("role") ?? "agent");
    const version = Number(q.get("v") ?? PROTOCOL_VERSION);
    if (!agent.success || !role.success || version !== PROTOCOL_VERSION) {
      const why = !agent.success ? "agent" : !role.success ? "role" : `protocol version ${version}`;
      socket.close(CLOSE_CODES.BadRequest.code, `${CLOSE_CODES.BadRequest.reason}: invalid ${why}`);
      return null;
    }
    const instance = q.get("_pk") ?? `anon-${this.#nextSession + 1}`;
    const session = new Session({
      n: ++this.#nextSession,
      socket,
      agent: agent.data,
      role: role.data,
      instance,
      connectedAt: this.#now(),
      metrics: this.metrics,
    });
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
    // Messages that waited in the inbox follow the welcome, in the session's frame order.
    session.queue = session.queue
      .then(() => this.inbox.flush(session))
      .catch((error: unknown) => {
        console.error(`[crosstalk ${this.team}] inbox of ${session.agent} not delivered`, error);
      });
    return session;
  }

  /** A stock Yjs provider for one document: same document permissions, no agent identity. */
  #connectRaw(socket: Socket, q: URLSearchParams): Session | null {
    const doc = docNameSchema.safeParse(q.get("doc"));
    const agent = nameSchema.safeParse(q.get("agent") ?? `yjs-${this.#nextSession + 1}`);
    if (!doc.success || !agent.success) {
      socket.close(CLOSE_CODES.BadRequest.code, `${CLOSE_CODES.BadRequest.reason}: invalid doc or agent`);
      return null;
    }
    const init = { n: ++this.#nextSession, socket, agent: agent.data, connectedAt: this.#now(), metrics: this.metrics };
    const session = new RawDocSession(init, doc.data);
    this.#sessions.set(socket, session);
    return session;
  }

  /** Routes one message; frames of a session are handled strictly in arrival order. */
  message(socket: Socket, data: string | ArrayBuffer | ArrayBufferView): void {
    const session = this.#sessions.get(socket);
    if (!session) return;
    session.queue = session.queue.then(() =>
      this.#handle(session, data).catch((error: unknown) => {
        console.error(`[crosstalk ${this.team}] frame from ${session.agent} failed`, error);
        const ref = typeof data === "string" ? refOf(data) : undefined;
        this.#refuse(session, { code: "INTERNAL", message: "the room failed to handle this frame" }, { ref });
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
    this.consumers.gone(session);
    this.presence.remove(session);
  }

  #refuse(session: Session, error: ErrorBody, extra: { ref?: string; doc?: string } = {}): void {
    this.metrics.refused.inc({ code: error.code });
    session.sendFrame({ type: "error", ...extra, error });
  }

  async #handle(session: Session, data: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    if (session instanceof RawDocSession) return this.#handleRaw(session, data);
    if (typeof data !== "string") {
      const whole = session.reassembler.push(asBytes(data));
      if (!whole.ok) return this.#refuse(session, whole.error);
      if (!whole.frame) return;
      this.metrics.framesIn.inc({ type: "doc" });
      const decoded = decodeDocFrame(whole.frame);
      if (!decoded.ok) return this.#refuse(session, decoded.error);
      const error = await this.hub.receive(session, decoded.frame.doc, decoded.frame.decoder);
      if (error) this.#refuse(session, error, { doc: decoded.frame.doc });
      return;
    }
    const parsed = parseClientFrame(data);
    this.metrics.framesIn.inc({ type: parsed.ok ? parsed.frame.type : "invalid" });
    if (!parsed.ok) return this.#refuse(session, parsed.error, { ref: parsed.ref });
    await this.#dispatch(session, parsed.frame, data.length);
  }

  /** y-websocket messages: sync goes to the hub, awareness is relayed to the doc's other stock clients. */
  async #handleRaw(session: RawDocSession, data: string | ArrayBuffer | ArrayBufferView): Promise<void> {
    if (typeof data === "string") return;
    const bytes = asBytes(data);
    const decoder = decoding.createDecoder(bytes);
    let type: number;
    try {
      type = decoding.readVarUint(decoder);
    } catch {
      return;
    }
    if (type === Y_MESSAGE_SYNC) {
      const error = await this.hub.receive(session, session.doc, decoder);
      if (error) console.warn(`[crosstalk ${this.team}] stock Yjs client ${session.agent}: ${error.message}`);
    } else if (type === Y_MESSAGE_AWARENESS) {
      for (const other of this.#sessions.values()) {
        if (other !== session && other instanceof RawDocSession && other.doc === session.doc) other.socket.send(bytes);
      }
    }
  }

  async #dispatch(session: Session, frame: ClientFrame, frameChars: number): Promise<void> {
    switch (frame.type) {
      case "publish":
        return this.streams.publish(session, frame, frameChars);
      case "history": {
        const page = await this.streams.read(frame.stream, frame.from, frame.to, frame.limit);
        return session.sendFrame({ type: "history.page", ref: frame.ref, ...page });
      }
      case "consumer.get": {
        const acked = await this.consumers.position(frame.stream, frame.consumer);
        return session.sendFrame({
          type: "consumer.state",
          ref: frame.ref,
          stream: frame.stream,
          consumer: frame.consumer,
          acked,
        });
      }
      case "consumer.ack":
        return this.consumers.ack(frame.stream, frame.consumer, frame.seq);
      case "consumers.list": {
        const list = await this.consumers.list(frame.stream);
        return session.sendFrame({ type: "consumers", ref: frame.ref, stream: frame.stream, ...list });
      }
      case "group.join": {
        const error = await this.consumers.join(session, frame);
        if (error) return this.#refuse(session, error, { ref: frame.ref });
        return session.sendFrame({ type: "ok", ref: frame.ref });
      }
      case "group.leave":
        return this.consumers.leave(session, frame.stream, frame.group);
      case "group.ack":
        return this.consumers.groupAck(session, frame.stream, frame.group, frame.seq);
      case "group.nak":
        return this.consumers.groupNak(session, frame);
      case "state.setIf":
        return this.state.setIf(session, frame);
      case "lease.acquire":
      case "lease.renew": {
        const granted =
          frame.type === "lease.acquire"
            ? await this.leases.acquire(session, frame)
            : await this.leases.renew(session, frame);
        if ("code" in granted) return this.#refuse(session, granted, { ref: frame.ref });
        return session.sendFrame({ type: "lease.granted", ref: frame.ref, ...granted });
      }
      case "lease.release":
        await this.leases.release(session, frame);
        return session.sendFrame({ type: "ok", ref: frame.ref });
      case "trace.get":
        return session.sendFrame({
          type: "trace",
          ref: frame.ref,
          nodes: await this.trace(frame.correlationId, frame.streams),
        });
      case "doc.close":
        return this.hub.close(session, frame.doc);
      case "rpc.handle":
        session.methods = [...new Set(frame.methods)];
        this.router.setMaxInFlight(session, frame.maxInFlight);
        return this.presence.changed(session);
      case "rpc.call":
        return this.router.call(session, frame);
      case "rpc.cancel":
        return this.router.cancel(session, frame.ref, frame.reason);
      case "rpc.result": {
        const error = await this.router.result(session, frame);
        if (error) this.#refuse(session, error);
        return;
      }
      case "rpc.progress":
        return this.router.progress(session, frame.id, frame.data);
      case "rpc.send": {
        const sent = await this.inbox.send(session, frame);
        if (!sent.ok) return this.#refuse(session, sent.error, { ref: frame.ref });
        this.metrics.sends.inc({ method: frame.method });
        this.traces.add({
          kind: "message",
          id: frame.id,
          correlationId: frame.correlationId ?? frame.id,
          ...(frame.causationId ? { causationId: frame.causationId } : {}),
          detail: { from: session.agent, to: sent.recipients, method: frame.method },
          ts: this.#now(),
        });
        return session.sendFrame({ type: "rpc.sent", ref: frame.ref, recipients: sent.recipients });
      }
      case "rpc.message.ack":
        return this.inbox.ack(session, frame.id);
      case "presence.set":
        session.status = frame.status;
        return this.presence.changed(session);
      case "leave":
        session.sendFrame({ type: "ok", ref: frame.ref });
        return this.#drop(session, null);
      default: {
        const unreachable: never = frame;
        return unreachable;
      }
    }
  }

  /**
   * HTTP, for tools: `GET …/<team>` a summary; `GET …/<team>/streams/<stream>?from=&to=&limit=`
   * the stream's history as NDJSON (archive included).
   */
  async request(req: Request): Promise<Response> {
    if (req.method !== "GET") return new Response("method not allowed", { status: 405 });
    const url = new URL(req.url);
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    // parts: ["parties", <party>, <team>, ...rest]
    const rest = parts.slice(3);
    if (rest.length === 0) return Response.json(this.info());
    if (rest[0] === "metrics" && rest.length === 1) {
      return new Response(await this.#metricsText(), { headers: { "content-type": "text/plain; version=0.0.4" } });
    }
    if (rest[0] === "agents" && rest.length === 1) return Response.json(this.presence.roster());
    if (rest[0] === "state" && rest.length === 2) {
      const ns = nameSchema.safeParse(rest[1]);
      if (!ns.success)
        return Response.json({ error: { code: "INVALID_ARGUMENT", message: "invalid namespace" } }, { status: 400 });
      return Response.json(await this.state.read(ns.data));
    }
    if (rest[0] === "streams" && rest.length === 2) {
      const stream = nameSchema.safeParse(rest[1]);
      const num = (k: string) => (url.searchParams.has(k) ? Number(url.searchParams.get(k)) : undefined);
      const from = num("from") ?? 1;
      const to = num("to");
      const limit = num("limit") ?? 1000;
      if (!stream.success || ![from, to ?? 1, limit].every((n) => Number.isInteger(n) && n >= 1)) {
        return Response.json(
          { error: { code: "INVALID_ARGUMENT", message: "stream, from, to and limit must be valid" } },
          { status: 400 },
        );
      }
      const lines: string[] = [];
      for await (const e of this.streams.scan(stream.data, from, to)) {
        lines.push(JSON.stringify(e));
        if (lines.length >= limit) break;
      }
      return new Response(lines.length > 0 ? `${lines.join("\n")}\n` : "", {
        headers: { "content-type": "application/x-ndjson" },
      });
    }
    return Response.json(
      { error: { code: "NOT_FOUND", message: `no such resource ${url.pathname}` } },
      { status: 404 },
    );
  }

  async #metricsText(): Promise<string> {
    const roles = new Map<string, number>();
    for (const s of this.presence.sessions()) roles.set(s.role, (roles.get(s.role) ?? 0) + 1);
    const streams = await this.streams.loaded();
    const lag: GaugeSample[] = [];
    for (const stream of streams) {
      for (const c of (await this.consumers.list(stream.name)).consumers) {
        lag.push({ labels: { stream: stream.name, consumer: c.name, kind: c.kind }, value: c.lag });
      }
    }
    const docs = [...this.hub.all()];
    return this.metrics.render([
      {
        name: "crosstalk_connections",
        help: "Open sockets (agents and stock Yjs clients).",
        samples: [{ value: this.#sessions.size }],
      },
      {
        name: "crosstalk_agents",
        help: "Connected agents, by role.",
        samples: [...roles].map(([role, value]) => ({ labels: { role }, value })),
      },
      {
        name: "crosstalk_stream_head_seq",
        help: "Last seq of each loaded stream.",
        samples: streams.map((s) => ({ labels: { stream: s.name }, value: s.head })),
      },
      {
        name: "crosstalk_dlq_depth",
        help: "Events in each loaded dead-letter stream.",
        samples: streams
          .filter((s) => s.name.endsWith(DLQ_SUFFIX))
          .map((s) => ({ labels: { stream: s.name }, value: s.head })),
      },
      { name: "crosstalk_consumer_lag", help: "Events published after a consumer's position.", samples: lag },
      {
        name: "crosstalk_rpc_in_flight",
        help: "Calls routed and not yet answered.",
        samples: [{ value: this.router.inFlight }],
      },
      {
        name: "crosstalk_doc_size_bytes",
        help: "Encoded size of each loaded document.",
        samples: docs.map((d) => ({ labels: { doc: d.name }, value: Y.encodeStateAsUpdate(d.ydoc).byteLength })),
      },
      {
        name: "crosstalk_doc_stored_tail_bytes",
        help: "Bytes of update records stored since each document's last snapshot.",
        samples: docs.map((d) => ({ labels: { doc: d.name }, value: d.stored.meta.tailBytes })),
      },
      {
        name: "crosstalk_doc_subscribers",
        help: "Sockets syncing each loaded document.",
        samples: docs.map((d) => ({ labels: { doc: d.name }, value: d.subscribers.size })),
      },
    ]);
  }

  /**
   * The events (searched in every stream's history, archive included) and the recent calls
   * and messages of one correlation id. A full scan: fine for an operator's question, not
   * for a hot path (an index by correlation id is the next step).
   */
  async trace(correlationId: string, only?: string[]): Promise<TraceItem[]> {
    const nodes: TraceItem[] = [...this.traces.find(correlationId)];
    for (const name of only ?? (await this.streams.names())) {
      for await (const e of this.streams.scan(name, 1)) if (e.correlationId === correlationId) nodes.push(eventNode(e));
    }
    return nodes;
  }

  /** A summary for `GET /parties/main/<team>`. */
  info(): { team: string; agents: ReturnType<typeof agentInfo>[]; inFlightCalls: number } {
    return { team: this.team, agents: this.presence.roster(), inFlightCalls: this.router.inFlight };
  }
}

/** The `ref` of a text frame, if it has a plausible one, for error replies. */
function refOf(text: string): string | undefined {
  try {
    const ref = (JSON.parse(text) as { ref?: unknown }).ref;
    return typeof ref === "string" && ref.length <= 64 ? ref : undefined;
  } catch {
    return undefined;
  }
}

/** A byte view of a binary WebSocket message, without copying. */
function asBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  return data instanceof ArrayBuffer
    ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
