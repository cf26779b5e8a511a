/**
 * One team's room, independent of the host: the PartyKit class in `server.ts` only adapts
 * connections, messages and requests to this. The same object could sit in partyserver or
 * a raw Durable Object.
 *
 * This file only composes. Each module owns its frames and HTTP routes (the contract:
 * `handlers.ts`); `admission.ts` says who a socket is, `dispatch.ts` routes its messages
 * (through `policy.ts`) and answers for every module, `http.ts` serves the routes.
 * `team-policy.ts` holds the team's policy; when it changes, {@link TeamRoom} applies it to
 * every live session here.
 *
 * Hibernation: a host that drops the room's object while its sockets stay open calls
 * {@link TeamRoom.resume} with them on the next start (`resume.ts`), and {@link TeamRoom.alarm}
 * when the storage alarm of the room's deadlines goes off (`alarms.ts`).
 */
import {
  DEFAULT_LOG_WINDOW,
  DEFAULT_ROOM_LIMITS,
  type ErrorCode,
  type Identity,
  type RoomLimits,
} from "../protocol/index.ts";
import { A2AGateway } from "./a2a.ts";
import { Admission } from "./admission.ts";
import { type AlarmHost, Alarms } from "./alarms.ts";
import { Audit, type AuditOptions } from "./audit.ts";
import { Backup, backupModule } from "./backup.ts";
import { Consumers, consumerModule } from "./consumers.ts";
import type { RoomContext } from "./context.ts";
import { Dispatch } from "./dispatch.ts";
import { DEFAULT_DOC_IDLE_MS, IdleDocs } from "./doc-cache.ts";
import { DocHub, docModule, type RebaseTuning } from "./docs.ts";
import { Feeds, feedModule } from "./feeds.ts";
import { flowModule, takeRead } from "./flow.ts";
import { Guard } from "./guard.ts";
import type { DispatchTable, Route } from "./handlers.ts";
import { answerPing, heartbeatModule } from "./heartbeat.ts";
import { createHttp, type HttpHandler } from "./http.ts";
import { Inbox, inboxModule } from "./inbox.ts";
import { keys } from "./keys.ts";
import { Leases, leaseModule } from "./leases.ts";
import { Metrics } from "./metrics.ts";
import { DEFAULT_MEMORY_LIMIT_BYTES, metricsModule } from "./metrics-text.ts";
import { OtlpExport } from "./otlp.ts";
import type { Principal } from "./policy.ts";
import { type agentInfo, Presence, presenceModule } from "./presence.ts";
import { Resumes, SETS_UP_NOTHING } from "./resume.ts";
import { Retention, type RetentionOptions, retentionModule } from "./retention.ts";
import { Router, type RouterOptions, rpcModule } from "./rpc.ts";
import type { Session, Socket } from "./session.ts";
import { SharedState, stateModule } from "./state.ts";
import type { KvStorage } from "./storage.ts";
import { type StreamOptions, Streams, streamModule } from "./streams.ts";
import { applyPolicy, policyModule, TeamPolicy } from "./team-policy.ts";
import { TraceLog, traceModule } from "./trace.ts";

const DAY_MS = 24 * 60 * 60 * 1000;
/** Refusals worth an audit record: someone tried what they may not, or pushed past a limit. */
const AUDITED_CODES: ReadonlySet<ErrorCode> = new Set([
  "FORBIDDEN",
  "UNAUTHORIZED",
  "BAD_FRAME",
  "UNKNOWN_FRAME",
  "TOO_LARGE",
  "LIMIT_EXCEEDED",
  "RATE_LIMITED",
]);

export type RoomOptions = {
  team: string;
  /** With `setAlarm` (a Durable Object's storage), the room's deadlines wake it instead of timers keeping it awake. */
  storage: KvStorage & AlarmHost;
  /** Stream tuning; defaults suit most teams. */
  streams?: Partial<StreamOptions>;
  /** Call and message tuning. */
  rpc?: Partial<RouterOptions> & { inboxTtlMs?: number };
  now?: () => number;
  /** Per-connection limits (`DEFAULT_ROOM_LIMITS`); the room's variables set them (`guard.ts` `limitsFromEnv`). */
  limits?: Partial<RoomLimits>;
  /** What the room may hold in memory, for `/metrics` and its alert (default 128 MB, a Durable Object's). */
  memoryLimitBytes?: number;
  /** Where to export the room's spans (OTLP/HTTP JSON; `CROSSTALK_OTLP_ENDPOINT`); none by default. */
  otlpEndpoint?: string;
  /**
   * Rebase state documents whose history outweighs their content (`docs.ts`), so a namespace's
   * memory follows its content, not its writes. On by default; `false` (`--var
   * CROSSTALK_REBASE=0`) turns it off, an object tunes when it happens (tests).
   */
  rebase?: boolean | Partial<RebaseTuning>;
  /**
   * How long a document nobody syncs stays in memory after its last use (`doc-cache.ts`;
   * default 30 s; `CROSSTALK_DOC_IDLE_MS`). Its state is in storage and loads again on demand.
   */
  docIdleMs?: number;
  /** Called when the room can no longer trust its memory (storage failed). */
  onFatal?: (error: unknown) => void;
  /** How often retention passes run per stream (`retention.ts`). */
  retention?: Partial<RetentionOptions>;
  /** How the audit stream aggregates (`audit.ts`). */
  audit?: Partial<AuditOptions>;
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
  readonly admission: Admission;
  readonly feeds: Feeds;
  /** The A2A gateway: the team's agents as A2A agents over HTTP (`…/<team>/a2a/…`). */
  readonly a2a: A2AGateway;
  /** The team's policy, and every principal's permissions under it. */
  readonly policy: TeamPolicy;
  /** Per-connection limits and error budgets. */
  readonly guard: Guard;
  /** The audit stream: security-relevant acts, written by the room only. */
  readonly audit: Audit;
  /** Per-stream retention and compaction of the archive, set in the policy. */
  readonly retention: Retention;
  /** Export and restore of the whole team (`…/<team>/backup`). */
  readonly backup: Backup;
  /** Every module's frame handlers, one per client frame type. */
  readonly handlers: DispatchTable;
  /** Token expiry, lease expiry and group ack deadlines: one schedule, one host alarm. */
  readonly alarms: Alarms;
  /** What each socket carries across a hibernation. */
  readonly resumes: Resumes;
  /** How many times this room's object has started (stored): a wake from hibernation counts. */
  starts = 0;
  readonly #storage: KvStorage;
  readonly #dispatch: Dispatch;
  readonly #http: HttpHandler;

  constructor(options: RoomOptions) {
    this.team = options.team;
    const now = options.now ?? Date.now;
    const limits: RoomLimits = { ...DEFAULT_ROOM_LIMITS, ...options.limits };
    this.#storage = options.storage;
    this.alarms = new Alarms(options.storage, now);
    this.hub = new DocHub(
      options.storage,
      (error) => {
        console.error(`[crosstalk ${this.team}] storage failed; dropping all connections`, error);
        this.admission.closeAll(1011, "storage failure");
        options.onFatal?.(error);
      },
      limits,
      this.metrics,
      options.rebase ?? true,
    );
    this.hub.idle = new IdleDocs(this.hub, { idleMs: options.docIdleMs ?? DEFAULT_DOC_IDLE_MS, now });
    this.hub.idle.unloaded.add((doc) => this.metrics.unloads.inc({ kind: doc.name.slice(0, doc.name.indexOf("/")) }));
    const ctx: RoomContext = {
      storage: options.storage,
      now,
      metrics: this.metrics,
      presence: this.presence,
      hub: this.hub,
      traces: this.traces,
      alarms: this.alarms,
      ...(options.otlpEndpoint
        ? { spans: new OtlpExport(options.otlpEndpoint, { service: "crosstalk-room", team: this.team }) }
        : {}),
    };
    this.streams = new Streams(ctx, {
      window: DEFAULT_LOG_WINDOW,
      dedupeWindowMs: DAY_MS,
      dedupeMaxIds: 100_000,
      ...options.streams,
    });
    this.consumers = new Consumers(ctx, this.streams);
    this.audit = new Audit({ streams: this.streams, now, options: { flushMs: 1000, maxKeys: 64, ...options.audit } });
    this.router = new Router(
      ctx,
      {
        idempotencyWindowMs: DAY_MS,
        defaultMaxInFlight: 256,
        inDoubtGraceMs: 30_000,
        recentlyGoneMs: 10_000,
        ...options.rpc,
      },
      this.traces,
    );
    this.state = new SharedState(ctx);
    this.leases = new Leases(ctx);
    this.inbox = new Inbox(ctx, options.rpc?.inboxTtlMs ?? DAY_MS);
    this.feeds = new Feeds(this.streams);
    this.a2a = new A2AGateway({ team: this.team, ctx, router: this.router, inbox: this.inbox });
    this.policy = new TeamPolicy({
      team: this.team,
      storage: options.storage,
      now,
      changed: () =>
        applyPolicy({
          sessions: this.admission.sessions(),
          policy: this.policy,
          hub: this.hub,
          presence: this.presence,
          consumers: this.consumers,
        }),
      replaced: (stored) => this.audit.record("policy.changed", { agent: stored.updatedBy ?? null, rev: stored.rev }),
    });
    this.retention = new Retention(ctx, {
      streams: this.streams,
      consumers: this.consumers,
      rules: () => this.policy.current().policy.retention,
      removed: (r) =>
        this.audit.record("retention.removed", {
          stream: r.stream,
          firstSeq: r.firstSeq,
          removed: r.last,
          at: r.lastRunAt,
        }),
      options: { intervalMs: 60_000, ...options.retention },
    });
    this.backup = new Backup(ctx, { streams: this.streams, policy: this.policy, team: this.team });
    void this.policy.load().catch((error: unknown) => {
      console.error(`[crosstalk ${this.team}] the policy could not be loaded`, error);
    });
    this.guard = new Guard(
      limits,
      {
        callsInFlight: (session) => this.router.callsBy(session),
        subscriptions: (session) => this.feeds.count(session) + this.consumers.memberships(session),
        subscribed: (session, frame) =>
          frame.type === "feed.open"
            ? this.feeds.has(session, frame.feed)
            : frame.type === "group.join" && this.consumers.isMember(session, frame.stream, frame.group),
      },
      now,
    );
    this.admission = new Admission({
      team: this.team,
      now,
      limits,
      metrics: this.metrics,
      presence: this.presence,
      alarms: this.alarms,
      grants: (session) => this.policy.bind(session),
      // In-doubt calls go back to the agent that may hold their answer, right after its welcome.
      admitted: (session) => this.router.returned(session),
      welcomed: (session) => this.inbox.flush(session),
      gone: (session) => {
        this.hub.closeAll(session);
        this.router.gone(session);
        this.consumers.gone(session);
        this.feeds.gone(session);
        this.resumes.forget(session);
      },
      refused: ({ agent, code, reason }) => this.audit.record("connection.refused", { agent, code, reason }),
      takenOver: (older, newer) =>
        this.audit.record("token.takeover", { agent: newer.agent, role: newer.role, replacedRole: older.role }),
    });
    this.resumes = new Resumes({
      team: this.team,
      storage: options.storage,
      admission: this.admission,
      hub: this.hub,
      feeds: this.feeds,
      consumers: this.consumers,
      router: this.router,
    });

    const modules = [
      this.admission.module,
      streamModule(this.streams),
      consumerModule(this.consumers),
      stateModule(this.state),
      leaseModule(this.leases),
      docModule(this.hub),
      feedModule(this.feeds),
      policyModule(this.policy),
      rpcModule(this.router, this.presence),
      inboxModule(this.inbox),
      presenceModule(this.presence),
      heartbeatModule,
      flowModule,
      traceModule({ traces: this.traces, streams: this.streams }),
      metricsModule({
        metrics: this.metrics,
        presence: this.presence,
        streams: this.streams,
        consumers: this.consumers,
        hub: this.hub,
        router: this.router,
        inbox: this.inbox,
        connections: () => this.admission.size,
        sessions: () => this.admission.sessions(),
        limits,
        memoryLimitBytes: options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES,
      }),
      retentionModule(this.retention),
      backupModule(this.backup),
      { frames: {}, routes: this.a2a.routes() },
      { frames: {}, routes: [{ path: "", handle: () => Response.json(this.info()) }] },
    ] as const;
    // Typed as the whole table: a client frame type no module handles does not compile.
    this.handlers = framesOf(modules);
    this.#dispatch = new Dispatch({
      team: this.team,
      table: this.handlers,
      hub: this.hub,
      metrics: this.metrics,
      admission: this.admission,
      guard: this.guard,
      policyReady: () => this.policy.ready(),
      refused: (session, error) => {
        if (AUDITED_CODES.has(error.code))
          this.audit.record("frame.refused", { agent: session.agent, code: error.code });
      },
      // After the frame: what it set up (documents, methods, feeds, groups) is kept for a wake.
      handled: (session, type) => {
        if (session.socket.setState && type !== null && !SETS_UP_NOTHING.has(type)) this.resumes.changed(session);
      },
    });
    this.#http = createHttp(modules.flatMap((m: Composable) => m.routes ?? []));
  }

  /**
   * Resolves once the room can admit agents with the team's stored policy (PartyKit's
   * `onStart`); counts the start (`starts`, in the room's summary and log).
   */
  async start(): Promise<void> {
    await this.policy.load();
    this.starts = ((await this.#storage.get<number>(keys.roomStarts)) ?? 0) + 1;
    await this.#storage.put({ [keys.roomStarts]: this.starts, [keys.roomTeam]: this.team });
  }

  /**
   * After `start`, on a host whose sockets outlive the room's object (hibernation): rebuilds
   * the sessions of the sockets still open and re-arms the stored deadlines. Messages must
   * wait for it (PartyKit delivers none before `onStart` resolves).
   */
  async resume(sockets: Iterable<Socket>): Promise<void> {
    const resumed = await this.resumes.resume(sockets);
    await this.leases.resume();
    console.log(`[crosstalk ${this.team}] room started (start ${this.starts}, ${resumed} sockets resumed)`);
  }

  /** The host's storage alarm went off: run the deadlines that are due. */
  alarm(): void {
    this.alarms.fire();
  }

  /** Admits a socket; `identity` is what the host verified from the agent's token (see `admission.ts`). */
  connect(socket: Socket, url: URL, identity?: Identity): Session | null {
    const session = this.admission.connect(socket, url, identity);
    if (session) this.resumes.attach(session);
    return session;
  }

  /** Routes one message; frames of a session are handled strictly in arrival order. */
  message(socket: Socket, data: string | ArrayBuffer | ArrayBufferView): void {
    const session = this.admission.get(socket);
    if (!session || answerPing(data, (text) => session.sendText(text)) || takeRead(data, session)) return;
    this.hub.idle?.tick();
    this.#dispatch.message(session, data);
  }

  close(socket: Socket): void {
    this.admission.close(socket);
  }

  /** HTTP, for tools: see the modules' routes (`GET …/<team>`, `/metrics`, `/agents`, `/state/<ns>`, `/streams/<stream>`) and the A2A gateway (`…/a2a/…`). */
  async request(req: Request, principal: Principal = null): Promise<Response> {
    await this.policy.load();
    this.hub.idle?.tick();
    return this.#http(req, principal && { ...principal, grants: this.policy.bind(principal) });
  }

  /** A summary for `GET /parties/main/<team>`. */
  info(): { team: string; agents: ReturnType<typeof agentInfo>[]; inFlightCalls: number; starts: number } {
    return {
      team: this.team,
      agents: this.presence.roster(),
      inFlightCalls: this.router.inFlight,
      starts: this.starts,
    };
  }
}

type Composable = { readonly frames: object; readonly routes?: readonly Route[] };
type Intersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void ? I : never;

/** Every module's frames in one table, typed as all of them together. Two modules claiming one frame type is a bug. */
function framesOf<const T extends readonly Composable[]>(modules: T): Intersection<T[number]["frames"]> {
  const table: Record<string, unknown> = {};
  for (const m of modules) {
    for (const [type, handler] of Object.entries(m.frames)) {
      if (Object.hasOwn(table, type)) throw new Error(`two room modules handle ${type}`);
      table[type] = handler;
    }
  }
  return table as Intersection<T[number]["frames"]>;
}
