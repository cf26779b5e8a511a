/**
 * `connect()` and the `Team` handle: one agent's view of its team room, with the three
 * primitives (state, events, direct messages) and the roster, over one socket.
 */
import { ObservableV2 } from "lib0/observable";
import type * as Y from "yjs";
import type { z } from "zod";
import {
  type AgentInfo,
  type ConsumerInfo,
  CrosstalkError,
  type DocName,
  type MethodInfo,
  nameSchema,
  type Permissions,
  type PolicyInput,
  type RoomFrameOf,
  type StoredEvent,
  sleep,
  stateDoc,
  type Target,
  targetResource,
  wholeStream,
} from "../protocol/index.ts";
import { A2AAgent, type A2AOptions } from "./a2a.ts";
import { Access, forbidden } from "./access.ts";
import { type EventCatalog, encodeEvent } from "./catalog.ts";
import { check } from "./check.ts";
import {
  type Contract,
  type ContractClient,
  type ContractHandlers,
  checkedHandler,
  checkedOutput,
  type MethodSpec,
  methodInfo,
} from "./contract.ts";
import { DocSync, type RebaseNotice } from "./docs.ts";
import {
  type EventHandler,
  Events,
  type HistoryOptions,
  type LiveSubscription,
  type PublishOptions,
  type PublishResult,
  type SubscribeOptions,
} from "./events.ts";
import { Lease, type LeaseOptions } from "./lease.ts";
import type { EncryptionOptions } from "./payload-crypto.ts";
import { type PendingInfo, Persistence } from "./persist.ts";
import { type Projection, type ProjectionOptions, startProjection } from "./projection.ts";
import { Requests } from "./requests.ts";
import { type CallContext, type CallOptions, type Handler, Rpc, type SendOptions, type SendResult } from "./rpc.ts";
import { type Entity, type Json, Namespace, type NamespaceHost, type NamespaceOptions } from "./state.ts";
import type { AgentStorage } from "./storage.ts";
import { buildTraceTree, type TraceNode } from "./trace.ts";
import { type Status, Transport, type TransportOptions } from "./transport.ts";

export type ConnectOptions = TransportOptions & {
  /**
   * Wait until the room has admitted this agent before resolving (default true). With
   * false, `connect` resolves at once and the agent works offline until the socket opens.
   */
  waitForOnline?: boolean;
  /** With `waitForOnline`, how long to wait before failing with OFFLINE (default 15 s). */
  connectTimeoutMs?: number;
  /**
   * End-to-end encrypted event payloads: keys by id (handed to agents outside the room) and
   * the key each stream's events are sealed with. See README "Encrypted payloads".
   */
  encryption?: EncryptionOptions;
  /**
   * Durable local storage: the agent keeps working offline and survives a reload or a crash.
   * Its outbox (publishes, sends), its open documents and its instance id live here; on
   * reconnect the outbox goes out in order, exactly once. `openFileStorage(dir)` from
   * `crosstalk/node`, IndexedDB in browsers, or any {@link AgentStorage} (a Durable Object's
   * `ctx.storage` behind a small adapter). See README "Offline". The storage stays yours:
   * close it after `team.close()`.
   */
  persist?: AgentStorage;
};

type TeamEvents = {
  status: (status: Status) => void;
  /** The roster changed. */
  agents: (agents: AgentInfo[]) => void;
  /** Something failed that no caller is waiting for: a subscription handler, a bad frame from the room. */
  error: (error: unknown, context: { event?: StoredEvent }) => void;
  /** The team's policy changed: what this agent may do from now on. */
  permissions: (permissions: Permissions) => void;
  /** What waits in the outbox for the room changed (at most once per tick). */
  pending: (pending: PendingInfo) => void;
};

export class Team extends ObservableV2<TeamEvents> {
  readonly team: string;
  readonly agent: string;
  readonly role: string;
  readonly #transport: Transport;
  readonly #docs: DocSync;
  readonly #events: Events;
  readonly #rpc: Rpc;
  readonly #requests: Requests;
  readonly #access = new Access();
  readonly #namespaces = new Map<string, Namespace<Entity>>();
  readonly #leases = new Set<Lease>();
  readonly #roster = new Map<string, AgentInfo>();
  /** Room clock minus local clock, from the last welcome. */
  #clockSkew = 0;
  /** The durable outbox and documents (`connect({ persist })`), or null. */
  readonly #persist: Persistence | null;
  #pendingScheduled = false;

  /** Use {@link connect}; `persistence` is what it read from `options.persist`. */
  constructor(options: TransportOptions & { encryption?: EncryptionOptions }, persistence?: Persistence) {
    super();
    for (const [field, value] of [
      ["team", options.team],
      ["agent", options.agent],
      ["role", options.role],
    ] as const) {
      check(nameSchema, value, field);
    }
    this.team = options.team;
    this.agent = options.agent;
    this.role = options.role;
    this.#persist = persistence ?? null;
    this.#transport = new Transport(persistence ? { ...options, instance: persistence.instance } : options);
    this.#docs = new DocSync(this.#transport, {
      mayRead: (name) => this.#mayRead(name),
      onReset: (name, doc, error) => this.#docReset(name, doc, error),
      ...(persistence
        ? { onCreate: (name: DocName, doc: Y.Doc, restore: boolean) => persistence.attachDoc(name, doc, restore) }
        : {}),
    });
    this.#requests = new Requests(this.#transport);
    this.#events = new Events(this.#transport, this.#docs, this.#requests, this.#access, this.agent, (error, event) =>
      this.emit("error", [error, { event }]),
    );
    if (options.encryption) this.#events.encryption = { team: this.team, options: options.encryption };
    this.#rpc = new Rpc(
      this.#transport,
      (ctx) => {
        // Completed in place rather than copied: its `signal` getter stays lazy.
        const bound = ctx as CallContext;
        bound.publish = (type, data, options) => this.publish(type, data, { ...ctx.trace, ...options });
        bound.call = (to, method, input, options) => this.call(to, method, input, { ...ctx.trace, ...options });
        bound.send = (to, method, input, options) => this.send(to, method, input, { ...ctx.trace, ...options });
        return bound;
      },
      (error) => this.emit("error", [error, {}]),
    );
    if (options.encryption) this.#rpc.encryption = { team: this.team, agent: this.agent, options: options.encryption };
    if (persistence) {
      this.#events.persist = persistence;
      this.#rpc.persist = persistence;
      this.#events.restore(persistence.restored("publish"));
      this.#rpc.restore(persistence.restored("rpc.send"));
      this.#rpc.restoreOutcomes(persistence.takeOutcomes());
      persistence.onChange = () => {
        if (this.#pendingScheduled) return;
        this.#pendingScheduled = true;
        queueMicrotask(() => {
          this.#pendingScheduled = false;
          this.emit("pending", [this.pending()]);
        });
      };
    }
    this.#transport.onFrame = (frame) => {
      switch (frame.type) {
        case "welcome":
          this.#access.update(frame.permissions);
          this.#clockSkew = frame.serverTime - Date.now();
          this.#roster.clear();
          for (const a of frame.roster) this.#roster.set(a.agent, a);
          // Order matters: documents first, then handlers, then the outbox.
          this.#docs.resync();
          this.#rpc.online();
          this.#events.resend();
          this.#requests.online();
          this.#events.online();
          this.emit("agents", [this.agents()]);
          return;
        case "presence":
        case "presence.batch":
          for (const change of frame.type === "presence" ? [frame] : frame.changes) {
            if (change.op === "leave") this.#roster.delete(change.agent.agent);
            else this.#roster.set(change.agent.agent, change.agent);
          }
          this.emit("agents", [this.agents()]);
          return;
        case "permissions":
          this.#access.update(frame.permissions);
          this.emit("permissions", [frame.permissions]);
          return;
        case "feed.events":
          return this.#events.feedEvents(frame);
        case "publish.ack":
          return this.#events.ack(frame.ref, frame.results);
        case "lease.lost":
          for (const lease of this.#leases)
            if (lease.name === frame.name && lease.token === frame.token) lease.markLost("expired");
          return;
        case "history.page":
        case "consumer.state":
        case "consumers":
        case "state.written":
        case "trace":
        case "lease.granted":
        case "ok":
        case "policy":
        case "feed.started":
          this.#requests.receive(frame.ref, frame);
          return;
        case "group.deliver":
          return this.#events.groupDeliver(frame);
        case "error":
          // A document refused by the policy starts over (`DocSync.refused`). Other document errors
          // (an update that raced its own step 1) leave it as is: the next sync exchange carries it.
          if (
            frame.doc &&
            frame.error.code === "REBASED" &&
            this.#docs.rebased(
              frame.doc as DocName,
              rebasedNotice(frame.error.details),
              CrosstalkError.from(frame.error),
            )
          )
            return;
          if (
            frame.doc &&
            frame.error.code === "FORBIDDEN" &&
            this.#docs.refused(frame.doc as DocName, CrosstalkError.from(frame.error))
          )
            return;
          if (frame.ref && this.#requests.receive(frame.ref, frame)) return;
          if (frame.ref && this.#events.refused(frame.ref, CrosstalkError.from(frame.error))) return;
          if (frame.ref && this.#rpc.refused(frame.ref, CrosstalkError.from(frame.error))) return;
          this.emit("error", [CrosstalkError.from(frame.error), {}]);
          return;
        case "rpc.request":
        case "rpc.abort":
        case "rpc.response":
        case "rpc.progress":
        case "rpc.message":
        case "rpc.sent":
          return this.#rpc.receive(frame);
      }
    };
    this.#transport.on("doc", (doc, decoder) => this.#docs.receive(doc, decoder));
    this.#transport.on("protocolError", (error) => this.emit("error", [error, {}]));
    this.#transport.on("status", (status) => {
      if (status === "offline") {
        this.#rpc.offline();
        this.#events.offline();
        this.#requests.offline();
      }
      this.emit("status", [status]);
    });
    this.#transport.on("fatal", (error) => this.#shutdown(error));
  }

  /**
   * What this agent may do, as the room last said (its role's rules and its token's scope;
   * see `protocol/permissions.ts`); null before the first welcome. Changes are announced
   * with the `permissions` event.
   */
  get permissions(): Permissions | null {
    return this.#access.permissions;
  }

  #mayRead(name: DocName): boolean {
    const slash = name.indexOf("/");
    const what = name.slice(slash + 1);
    return name.startsWith("state/")
      ? this.#access.permits("state.read", what)
      : this.#access.permits("stream.subscribe", wholeStream(what), { pattern: true });
  }

  /** The room refused a document: a namespace starts over on its fresh copy; a log's subscriptions move to feeds. */
  #docReset(name: DocName, doc: Y.Doc, error: CrosstalkError): void {
    const what = name.slice(name.indexOf("/") + 1);
    if (name.startsWith("log/")) return this.#events.logRefused(what);
    const namespace = this.#namespaces.get(what);
    if (!namespace) return;
    const ready = this.#docs.synced(name);
    ready.catch(() => {});
    // A rebase is the room's housekeeping, not a refusal: nothing to report.
    const rebased = error.code === "REBASED";
    namespace.reset(doc, ready, rebased ? null : error);
    if (!rebased) this.emit("error", [error, {}]);
  }

  /** "connecting" until first admitted, then "online" / "offline"; "closed" after `close()`. */
  get status(): Status {
    return this.#transport.status;
  }

  /** The room's clock as best known here (ms since the epoch). */
  now(): number {
    return Date.now() + this.#clockSkew;
  }

  // --- shared state ---------------------------------------------------------------------

  /**
   * The namespace `ns`: a map of entities shared by the team, synced from the first call.
   * A schema given on the first call validates writes and reports invalid remote data.
   */
  state<T extends Entity = Entity>(ns: string, options?: NamespaceOptions<T>): Namespace<T> {
    let namespace = this.#namespaces.get(ns);
    if (!namespace) {
      check(nameSchema, ns, "namespace");
      this.#access.check("state.read", ns);
      const doc = this.#docs.open(stateDoc(ns));
      const host: NamespaceHost = {
        agent: this.agent,
        now: () => this.now(),
        checkWrite: (name) => this.#access.check("state.write", name),
        setIf: async (name, key, expectedVersion, value) => {
          const { version } = await this.#requests.ask({ type: "state.setIf", ns: name, key, expectedVersion, value });
          return { version };
        },
      };
      const ready = this.#docs.synced(stateDoc(ns));
      // A namespace this agent turns out not to be allowed to read fails `ready`; nobody need await it.
      ready.catch(() => {});
      namespace = new Namespace(ns, doc, ready, host, options as NamespaceOptions<Entity>);
      this.#namespaces.set(ns, namespace);
    }
    return namespace as unknown as Namespace<T>;
  }

  /**
   * Takes lease `name` (held by one agent at a time) or fails with CONFLICT, the holder in
   * `details`. The lease renews itself while held; watch `lease.lost`.
   */
  async lease(name: string, options: LeaseOptions = {}): Promise<Lease> {
    this.#access.check("lease.acquire", name);
    const ttlMs = options.ttlMs ?? 10_000;
    const granted = await this.#requests.ask({ type: "lease.acquire", name, ttlMs });
    const lease = new Lease(
      granted,
      this.#requests,
      ttlMs,
      options.autoRenew ?? true,
      (l) => this.#leases.delete(l),
      () => this.now(),
    );
    this.#leases.add(lease);
    return lease;
  }

  /** Keeps a namespace in step with a stream; see {@link ProjectionOptions}. */
  project<T extends Entity>(options: ProjectionOptions<T>): Projection {
    return startProjection(
      {
        subscribe: (pattern, handler, opts) => this.subscribe(pattern, handler, opts),
        hold: (stream, consumer, seq) => this.#events.hold(stream, consumer, seq),
        acquire: async (name) => {
          // Wait for the lease: another agent may run this projection now.
          for (;;) {
            try {
              return await this.lease(name, { ttlMs: 5_000 });
            } catch (error) {
              if (!(error instanceof CrosstalkError) || (error.code !== "CONFLICT" && !error.retryable)) throw error;
              await sleep(250);
            }
          }
        },
      },
      options,
    );
  }

  // --- event streams --------------------------------------------------------------------

  /** Appends an event; resolves once the room has stored it. */
  publish(type: string, data: unknown, options?: PublishOptions): Promise<PublishResult> {
    return this.#events.publish(type, data, options);
  }

  publishBatch(
    items: { type: string; data: unknown; options?: Omit<PublishOptions, "stream"> }[],
    options?: { stream?: string },
  ): Promise<PublishResult[]> {
    return this.#events.publishBatch(items, options);
  }

  /** Delivers matching events in seq order, one at a time. `from` defaults to "end". */
  subscribe(pattern: string, handler: EventHandler, options?: SubscribeOptions): LiveSubscription {
    return this.#events.subscribe(pattern, handler, options);
  }

  /** The stream's whole history (archive included) as an async iterable. */
  history(options?: HistoryOptions): AsyncGenerator<StoredEvent> {
    return this.#events.history(options);
  }

  /**
   * The causal tree of one piece of work: the events (from every stream, or `streams`)
   * and the recent calls and messages with this correlation id, each under its cause.
   */
  async trace(correlationId: string, options: { streams?: string[] } = {}): Promise<TraceNode[]> {
    for (const stream of options.streams ?? []) {
      if (!this.#access.reaches("stream.subscribe", wholeStream(stream)))
        throw forbidden("stream.subscribe", wholeStream(stream));
    }
    const reply = await this.#requests.ask({ type: "trace.get", correlationId, ...options });
    return buildTraceTree(reply.nodes);
  }

  /** Durable consumers and groups of `stream`, with positions and lag. */
  consumers(stream = "main"): Promise<{ head: number; consumers: ConsumerInfo[] }> {
    return this.#events.consumers(stream);
  }

  /** Typed publish/subscribe over a catalog from `defineEvents`. */
  events<T extends Record<string, z.ZodType>>(catalog: EventCatalog<T>): TypedEvents<T> {
    return {
      publish: async (type, data, options) => {
        const { data: checked, v } = encodeEvent(catalog as EventCatalog, type as string, data);
        return this.publish(type as string, checked, { ...options, v });
      },
      subscribe: (pattern, handler, options) =>
        this.subscribe(pattern, handler as EventHandler, { ...options, catalog: catalog as EventCatalog }),
    };
  }

  /** Publish frames not yet acknowledged by the room. */
  get pendingPublishes(): number {
    return this.#events.pending;
  }

  // --- offline --------------------------------------------------------------------------

  /** This client instance's id (kept in `persist` storage across runs). */
  get instance(): string {
    return this.#transport.instance;
  }

  /**
   * What waits for the room: `count` is every event, message and queued call not yet there
   * (each counted once, however many share a frame); `bytes` and `oldestAt` are the durable
   * outbox's size on the wire and oldest write. Without `persist`, `bytes` is 0 and `oldestAt` null.
   */
  pending(): PendingInfo {
    const unstored = this.#events.queuedEvents + this.#rpc.queuedCalls;
    if (this.#persist) {
      const stored = this.#persist.pending();
      return { ...stored, count: stored.count + unstored };
    }
    return {
      count: this.#events.pendingEvents + this.#rpc.pendingSends + unstored,
      bytes: 0,
      oldestAt: null,
    };
  }

  /**
   * Resolves once every local write so far (state, publishes, sends) is durable in the
   * agent's own storage — online or not. Rejects with the storage's error (STORAGE_FULL).
   * Without `persist` there is nothing to wait for.
   */
  async flushed(): Promise<void> {
    await this.#persist?.flushed();
  }

  /**
   * Resolves once the room has everything written so far: the outbox is empty and every
   * open document has synced on the current connection. Waits for the link while offline;
   * with `timeoutMs`, fails with OFFLINE when it is not there by then.
   */
  async synced({ timeoutMs }: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    await this.flushed();
    for (;;) {
      const closed = this.#transport.closedError;
      if (closed) throw closed;
      if (this.status === "online" && this.pending().count === 0 && this.#docs.allSynced()) return;
      if (Date.now() >= deadline)
        throw new CrosstalkError("OFFLINE", `the room did not have everything within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  // --- direct messages ------------------------------------------------------------------

  /**
   * Serves `method`; returns a function that stops serving it. `info` (description, JSON
   * Schemas, `oneWay`) is announced with it: the A2A gateway's cards show it (`serve` fills it
   * from the contract).
   */
  handle(method: string, handler: Handler, info?: MethodInfo): () => void {
    this.#access.check("rpc.serve", method);
    return this.#rpc.handle(method, handler, info);
  }

  /**
   * Calls `method` on `to` — an agent id, or `{ role }` for the least busy live agent of that
   * role — and resolves with its output. See {@link CallOptions} for deadlines, retries,
   * idempotency and progress.
   */
  call<T = Json>(to: Target, method: string, input?: unknown, options?: CallOptions): Promise<T> {
    try {
      this.#access.check("rpc.call", targetResource(to, method));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#rpc.call(to, method, input, options) as Promise<T>;
  }

  /**
   * Fire-and-forget: resolves once the room has stored the message. An offline agent gets it
   * when it reconnects (within the TTL); `{ role }` reaches every live agent of the role.
   */
  send(to: Target, method: string, input?: unknown, options?: SendOptions): Promise<SendResult> {
    try {
      this.#access.check("inbox.send", targetResource(to, method));
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#rpc.send(to, method, input, options);
  }

  /** Serves every method of a contract, with input and output validated. Returns an unsubscribe. */
  serve<C extends Record<string, MethodSpec>>(contract: Contract<C>, handlers: ContractHandlers<C>): () => void {
    const stops = Object.entries(contract.methods).map(([method, spec]) => {
      const handler = handlers[method as keyof C] as (input: unknown, ctx: CallContext) => unknown;
      if (typeof handler !== "function") throw new CrosstalkError("INVALID_ARGUMENT", `no handler for ${method}`);
      return this.handle(method, checkedHandler(spec, method, handler) as Handler, methodInfo(spec));
    });
    return () => {
      for (const stop of stops) stop();
    };
  }

  /** A typed proxy for calling a contract's methods on `target`. */
  client<C extends Record<string, MethodSpec>>(contract: Contract<C>, target: Target): ContractClient<C> {
    const proxy: Record<string, unknown> = {};
    for (const [method, spec] of Object.entries(contract.methods)) {
      proxy[method] = async (input: unknown, options?: CallOptions) =>
        checkedOutput(spec, method, await this.call(target, method, input, options));
    }
    return proxy as ContractClient<C>;
  }

  /**
   * An outside A2A agent (v1.0, JSON-RPC) at `url`, called like a teammate:
   * `await team.a2a(url, { token }).call(input, { timeoutMs, idempotencyKey, onProgress, method })`.
   * The call goes straight to that agent over HTTP, not through the room.
   */
  a2a(url: string, options?: A2AOptions): A2AAgent {
    return new A2AAgent(url, options);
  }

  /** Caps how many calls the room routes to this agent at once (beyond it callers get OVERLOADED). */
  setMaxInFlight(max: number): void {
    this.#rpc.setMaxInFlight(max);
  }

  // --- presence -------------------------------------------------------------------------

  /** The connected agents, this one included, as the room last reported them. */
  agents(): AgentInfo[] {
    return [...this.#roster.values()];
  }

  /** Replaces this agent's free-form status fields in the roster. */
  setStatus(status: Record<string, Json>): void {
    this.#access.check("presence.write", this.agent);
    this.#transport.send({ type: "presence.set", status });
  }

  // --- policy ---------------------------------------------------------------------------

  /** The team's policy as stored, with its revision (needs `policy.admin`). */
  async policy(): Promise<Omit<RoomFrameOf<"policy">, "type" | "ref">> {
    this.#access.check("policy.admin", "policy");
    const { type: _, ref: __, ...stored } = await this.#requests.ask({ type: "policy.get" });
    return stored;
  }

  /**
   * Replaces the team's policy (needs `policy.admin`); it applies to every live agent at
   * once. A bad policy fails with INVALID_ARGUMENT listing every problem in `details.issues`;
   * with `expectedRev`, a policy changed meanwhile fails with CONFLICT.
   */
  async setPolicy(
    policy: PolicyInput,
    options: { expectedRev?: number } = {},
  ): Promise<Omit<RoomFrameOf<"policy">, "type" | "ref">> {
    this.#access.check("policy.admin", "policy");
    const {
      type: _,
      ref: __,
      ...stored
    } = await this.#requests.ask({
      type: "policy.set",
      policy: policy as never,
      ...options,
    });
    return stored;
  }

  // --- lifecycle ------------------------------------------------------------------------

  /**
   * Resolves when online, or fails with OFFLINE after `timeoutMs`, or with the room's refusal.
   * With `failIfUnreachable` (what `connect` does for the first connection) a host where
   * nothing listens fails at once with OFFLINE instead of waiting out the timeout.
   */
  online(timeoutMs = 15_000, { failIfUnreachable = false }: { failIfUnreachable?: boolean } = {}): Promise<void> {
    const closed = () => this.#transport.refusal ?? new CrosstalkError("CLOSED", "the team connection is closed");
    if (this.status === "online") return Promise.resolve();
    if (this.status === "closed") return Promise.reject(closed());
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.off("status", onStatus);
        this.#transport.off("unreachable", onUnreachable);
      };
      const onStatus = (s: Status) => {
        if (s !== "online" && s !== "closed") return;
        done();
        if (s === "online") resolve();
        else reject(closed());
      };
      const onUnreachable = (error: CrosstalkError) => {
        done();
        reject(error);
      };
      const timer = setTimeout(() => {
        done();
        reject(new CrosstalkError("OFFLINE", `could not reach the room within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on("status", onStatus);
      if (failIfUnreachable) this.#transport.on("unreachable", onUnreachable);
    });
  }

  /** Releases held leases, closes the socket. Pending publishes and calls fail with CLOSED. */
  async close(): Promise<void> {
    // Local writes finish first: what is in the outbox then is there for the next run.
    await this.#persist?.flushed().catch(() => {});
    // Held leases are given back rather than left to expire (bounded: closing never hangs).
    if (this.status === "online" && this.#leases.size > 0) {
      const released = Promise.all([...this.#leases].map((lease) => lease.release()));
      await Promise.race([released, sleep(1000)]);
    }
    // Leaving on purpose frees the agent id before the socket goes, so a successor can take it
    // at once instead of racing the room's view of the close.
    if (this.status === "online") await this.#requests.ask({ type: "leave" }, 1000).catch(() => {});
    this.#shutdown(new CrosstalkError("CLOSED", "the team connection was closed"));
  }

  #shutdown(error: CrosstalkError): void {
    if (this.status !== "closed") this.#transport.close();
    this.#events.failAll(error);
    this.#rpc.failAll(error);
    this.#requests.failAll(error);
    for (const lease of this.#leases) lease.markLost("closed");
    this.#docs.destroy();
  }
}

/** Connects an agent to its team room. See {@link ConnectOptions}. */
export async function connect(options: ConnectOptions): Promise<Team> {
  const persistence = options.persist ? await Persistence.open(options.persist, options.instance) : undefined;
  const team = new Team(options, persistence);
  if (options.waitForOnline === false) return team;
  try {
    await team.online(options.connectTimeoutMs, { failIfUnreachable: true });
  } catch (error) {
    await team.close();
    throw error;
  }
  return team;
}

/** An event of catalog type `K` as a typed handler sees it. */
export type TypedEvent<T extends Record<string, z.ZodType>, K extends keyof T = keyof T> = K extends keyof T
  ? Omit<StoredEvent, "type" | "data"> & { type: K; data: z.output<T[K]> }
  : never;

export type TypedEvents<T extends Record<string, z.ZodType>> = {
  publish<K extends keyof T & string>(
    type: K,
    data: z.input<T[K]>,
    options?: Omit<PublishOptions, "v">,
  ): Promise<PublishResult>;
  /** An exact type gives that event's shape; a wildcard pattern gives the union of the catalog. */
  subscribe<P extends string>(
    pattern: P,
    handler: (event: P extends keyof T ? TypedEvent<T, P> : TypedEvent<T>) => unknown,
    options?: Omit<SubscribeOptions, "catalog">,
  ): LiveSubscription;
};

/**
 * What a `REBASED` error names: `details.known` (Yjs client id → the room's clock of it) and
 * `details.live` (client id → clocks of entries unchanged since; older rooms send none).
 * Anything malformed counts as none.
 */
function rebasedNotice(details: unknown): RebaseNotice {
  const { known, live } = (details ?? {}) as { known?: unknown; live?: unknown };
  const entries = (o: unknown) => (typeof o === "object" && o !== null ? Object.entries(o) : []);
  return {
    known: Object.fromEntries(entries(known).filter((e): e is [string, number] => typeof e[1] === "number")),
    live: Object.fromEntries(
      entries(live).filter(
        (e): e is [string, number[]] =>
          Array.isArray(e[1]) && e[1].every((c) => Number.isSafeInteger(c) && (c as number) >= 0),
      ),
    ),
  };
}
