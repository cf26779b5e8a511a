/**
 * The A2A gateway: every agent of the team is an A2A v1.0 agent (JSON-RPC binding) at
 * `/parties/main/<team>/a2a/<agentId>/`, and the team itself is one at `…/<team>/a2a/`, so
 * any A2A client can discover and call the team without glue code.
 *
 * - **Cards** (`…/.well-known/agent-card.json`) come from the live roster: one skill per
 *   served method, with the input and output JSON Schemas the agent announced (`rpc.handle`
 *   `info`, filled from zod contracts by `team.serve`) under the {@link a2a.A2A_SCHEMA_EXTENSION}
 *   extension. Served with an ETag; `If-None-Match` gets 304.
 * - **Who calls**: the HTTP request's verified identity (the bearer token the edge checked).
 *   The gateway calls as that agent, through the same router, policy and idempotency as its
 *   socket would: a {@link GatewayCaller} session that is not in the roster. The policy's
 *   `rpc.call` / `inbox.send` rules for the caller's role decide what it may call.
 * - **SendMessage** → a call with the task id as idempotency key. The method comes from
 *   `metadata.method` (or the agent's only method), the input from the first `data` part (or
 *   the first `text` part). Output → an artifact and COMPLETED; callee errors and TIMEOUT →
 *   FAILED; NO_ROUTE / OVERLOADED / FORBIDDEN → REJECTED; CANCELLED → CANCELED; INVALID_INPUT →
 *   JSON-RPC -32602 with the zod issues (the task is REJECTED). The same message id again
 *   (a retry) answers with the task it started. A method announced `oneWay` is `send`
 *   (durable inbox) and answered with a Message acknowledgement, no task.
 * - **Streams** (`SendStreamingMessage`, `SubscribeToTask`): SSE, each event with an `id:`
 *   (the update's number). Progress (`ctx.progress`) arrives as WORKING status updates. A
 *   dropped stream does not stop the task; `SubscribeToTask` with `Last-Event-ID` replays
 *   every update after that one and follows on, without it the first event is the task as it
 *   stands (history included). A stream closes on a terminal or interrupted state.
 * - **Tasks** live in room storage per caller (`a2a-tasks.ts`); another caller gets
 *   -32001. A task still running when the room restarted is called again with its key when
 *   next touched: the router answers from its stored result, or the callee from its memory.
 */
import {
  a2a,
  type ClientFrame,
  type ErrorBody,
  type ErrorCode,
  type Json,
  type MethodInfo,
  type RoomFrame,
  type Target,
  uuidv7,
} from "../protocol/index.ts";
import type { TaskRecord } from "./a2a-tasks.ts";
import { TaskStore } from "./a2a-tasks.ts";
import type { RoomContext } from "./context.ts";
import type { Route, RouteRequest } from "./handlers.ts";
import type { Inbox } from "./inbox.ts";
import { authorize, type Principal } from "./policy.ts";
import type { Router } from "./rpc.ts";
import { Session } from "./session.ts";

const { A2A_ERRORS: E, TERMINAL_STATES, INTERRUPTED_STATES } = a2a;

type Caller = NonNullable<Principal>;
type RpcError = a2a.JsonRpcError;
type Endpoint = { agent: string } | { team: true };
type Update = a2a.A2AStreamResponse;

/** A JSON-RPC failure, thrown inside a method and answered as the request's error. */
class Refusal extends Error {
  constructor(
    readonly error: RpcError,
    readonly status = 200,
  ) {
    super(error.message);
  }
}

/**
 * The gateway's side of a call: a session of the calling agent that the router answers
 * (`rpc.response`, `rpc.progress`) like a socket would, but that is not in the roster and
 * has no socket. Numbered below zero, so it never shares a number with a real session.
 */
class GatewayCaller extends Session {
  readonly #listeners = new Map<string, (frame: RoomFrame) => void>();

  listen(ref: string, listener: (frame: RoomFrame) => void): () => void {
    this.#listeners.set(ref, listener);
    return () => {
      if (this.#listeners.get(ref) === listener) this.#listeners.delete(ref);
    };
  }

  override sendFrame(frame: RoomFrame): void {
    if ("ref" in frame && typeof frame.ref === "string") this.#listeners.get(frame.ref)?.(frame);
  }
  override sendText(): void {}
  override sendBinary(): void {}
}

export type GatewayDeps = {
  team: string;
  ctx: RoomContext;
  router: Router;
  inbox: Inbox;
};

export class A2AGateway {
  readonly tasks: TaskStore;
  /** One caller session per calling agent. */
  readonly #callers = new Map<string, GatewayCaller>();
  #nextCaller = 0;
  /** Tasks whose call runs in this incarnation, by `<agent>|<task>`. */
  readonly #running = new Set<string>();

  constructor(private readonly deps: GatewayDeps) {
    this.tasks = new TaskStore(deps.ctx.storage);
  }

  /** The gateway's HTTP routes: the team's and each agent's card and JSON-RPC endpoint. */
  routes(): Route[] {
    const rpc = (endpoint: (p: Record<string, string>) => Endpoint) => ({
      methods: ["POST"],
      handle: (params: Record<string, string>, url: URL, request: RouteRequest) =>
        this.#jsonRpc(endpoint(params), url, request),
    });
    const card = (endpoint: (p: Record<string, string>) => Endpoint) => ({
      handle: (params: Record<string, string>, url: URL, request: RouteRequest) =>
        this.#card(endpoint(params), url, request.req),
    });
    return [
      { path: `a2a/${a2a.A2A_CARD_PATH}`, ...card(() => ({ team: true })) },
      { path: "a2a", ...rpc(() => ({ team: true })) },
      { path: `a2a/:agent/${a2a.A2A_CARD_PATH}`, ...card((p) => ({ agent: p.agent as string })) },
      { path: "a2a/:agent", ...rpc((p) => ({ agent: p.agent as string })) },
    ];
  }

  // --- cards ------------------------------------------------------------------------------

  async #card(endpoint: Endpoint, url: URL, req: Request): Promise<Response> {
    const base = `${url.origin}${url.pathname.slice(0, url.pathname.length - a2a.A2A_CARD_PATH.length)}`;
    const card = this.cardOf(endpoint, base);
    if (!card) return Response.json({ error: { code: "NOT_FOUND", message: "no such agent" } }, { status: 404 });
    const body = JSON.stringify(card);
    const etag = `"${await digest(body)}"`;
    const headers = { ETag: etag, "Cache-Control": "no-cache", "Content-Type": "application/json" };
    if (req.headers.get("If-None-Match") === etag) return new Response(null, { status: 304, headers });
    return new Response(body, { headers });
  }

  /** The A2A Agent Card of an agent (null when it is not connected) or of the team, served at `base`. */
  cardOf(endpoint: Endpoint, base: string): Record<string, unknown> | null {
    const team = this.deps.ctx.presence;
    const skills: Record<string, unknown>[] = [];
    const schemas: Record<string, unknown> = {};
    let name: string;
    let description: string;
    if ("agent" in endpoint) {
      const session = team.get(endpoint.agent);
      if (!session) return null;
      name = session.agent;
      description = `crosstalk agent ${session.agent} (role ${session.role})`;
      for (const method of session.methods) {
        const info = this.deps.router.infoOf(session, method);
        skills.push(skill(method, method, info, [session.role]));
        if (info?.input || info?.output) schemas[method] = schemaOf(info);
      }
    } else {
      name = this.#team();
      const roles = new Map<string, { agents: string[]; methods: Map<string, MethodInfo | undefined> }>();
      for (const s of team.sessions()) {
        const role = roles.get(s.role) ?? {
          agents: [] as string[],
          methods: new Map<string, MethodInfo | undefined>(),
        };
        role.agents.push(s.agent);
        for (const m of s.methods) if (!role.methods.has(m)) role.methods.set(m, this.deps.router.infoOf(s, m));
        roles.set(s.role, role);
      }
      const listed = [...roles].map(([role, r]) => `${role} (${r.agents.join(", ")})`).join("; ");
      description = `crosstalk team ${name}. Roles: ${listed || "none connected"}. Name the method in message metadata.method and the role in metadata.role (or the agent in metadata.agent).`;
      for (const [role, r] of roles) {
        for (const [method, info] of r.methods) {
          skills.push(skill(`${role}/${method}`, method, info, [role]));
          if (info?.input || info?.output) schemas[`${role}/${method}`] = schemaOf(info);
        }
      }
    }
    return {
      name,
      description,
      supportedInterfaces: [{ url: base, protocolBinding: "JSONRPC", protocolVersion: a2a.A2A_PROTOCOL_VERSION }],
      provider: { organization: "crosstalk", url: base },
      version: "1.0.0",
      capabilities: {
        streaming: true,
        pushNotifications: false,
        extensions: [
          {
            uri: a2a.A2A_SCHEMA_EXTENSION,
            description: "Input and output JSON Schema of each skill, by skill id",
            required: false,
            params: schemas,
          },
        ],
      },
      securitySchemes: {
        bearer: {
          httpAuthSecurityScheme: {
            scheme: "Bearer",
            bearerFormat: "JWT",
            description: "A crosstalk agent token for this team (npx crosstalk token --team … --agent … --role …)",
          },
        },
      },
      securityRequirements: [{ schemes: { bearer: { list: [] } } }],
      defaultInputModes: ["application/json", "text/plain"],
      defaultOutputModes: ["application/json"],
      skills,
    };
  }

  #team(): string {
    return this.deps.team;
  }

  // --- JSON-RPC ---------------------------------------------------------------------------

  async #jsonRpc(endpoint: Endpoint, _url: URL, { req, principal }: RouteRequest): Promise<Response> {
    let id: a2a.JsonRpcId = null;
    try {
      let body: unknown;
      try {
        body = await req.json();
      } catch {
        throw new Refusal({ code: E.PARSE_ERROR, message: "the body is not JSON" });
      }
      const parsed = a2a.jsonRpcRequestSchema.safeParse(body);
      if (!parsed.success) throw new Refusal({ code: E.INVALID_REQUEST, message: "not a JSON-RPC 2.0 request" });
      id = parsed.data.id ?? null;
      // A2A 1.0: a request without the header speaks 0.3, which this gateway does not.
      const version = req.headers.get(a2a.A2A_VERSION_HEADER) ?? "0.3";
      if (version !== a2a.A2A_PROTOCOL_VERSION) {
        throw new Refusal({
          code: E.VERSION_NOT_SUPPORTED,
          message: `A2A version ${version} is not supported${req.headers.has(a2a.A2A_VERSION_HEADER) ? "" : " (no A2A-Version header means 0.3)"}: send A2A-Version: ${a2a.A2A_PROTOCOL_VERSION}`,
        });
      }
      if (!principal) throw new Refusal({ code: E.INVALID_REQUEST, message: "no verified identity" }, 401);
      const caller = principal;
      const params = parsed.data.params ?? {};
      const reply = (result: unknown) => Response.json({ jsonrpc: "2.0", id, result });
      switch (parsed.data.method) {
        case "SendMessage":
          return reply(await this.#send(caller, endpoint, params));
        case "SendStreamingMessage":
          return this.#sse(id, await this.#sendStreaming(caller, endpoint, params));
        case "GetTask": {
          const p = parse(a2a.a2aTaskIdParamsSchema, params);
          return reply(trimHistory((await this.#task(caller, p.id)).task, p.historyLength));
        }
        case "ListTasks":
          return reply(await this.#list(caller, parse(a2a.a2aListTasksParamsSchema, params)));
        case "CancelTask":
          return reply(await this.#cancel(caller, parse(a2a.a2aTaskIdParamsSchema, params).id));
        case "SubscribeToTask": {
          const p = parse(a2a.a2aTaskIdParamsSchema, params);
          return this.#sse(id, await this.#subscribe(caller, p.id, lastEventId(req)));
        }
        case "GetExtendedAgentCard":
          throw new Refusal({ code: E.EXTENDED_CARD_NOT_CONFIGURED, message: "no extended card" });
        case "CreateTaskPushNotificationConfig":
        case "GetTaskPushNotificationConfig":
        case "ListTaskPushNotificationConfigs":
        case "DeleteTaskPushNotificationConfig":
          throw new Refusal({
            code: E.PUSH_NOTIFICATION_NOT_SUPPORTED,
            message: "push notifications are not supported",
          });
        default:
          throw new Refusal({ code: E.METHOD_NOT_FOUND, message: `no method ${parsed.data.method}` });
      }
    } catch (error) {
      const refusal =
        error instanceof Refusal
          ? error
          : new Refusal({ code: E.INTERNAL_ERROR, message: error instanceof Error ? error.message : String(error) });
      const headers: Record<string, string> =
        refusal.status === 401 ? { "WWW-Authenticate": 'Bearer realm="crosstalk"' } : {};
      return Response.json({ jsonrpc: "2.0", id, error: refusal.error }, { status: refusal.status, headers });
    }
  }

  /** SSE: each update a JSON-RPC response with `id:` its number; closes after a terminal or interrupted state. */
  #sse(id: a2a.JsonRpcId, updates: AsyncIterable<{ seq: number; update: Update }>): Response {
    const encoder = new TextEncoder();
    const iterator = updates[Symbol.asyncIterator]();
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = await iterator.next();
        if (next.done) return controller.close();
        const { seq, update } = next.value;
        const data = JSON.stringify({ jsonrpc: "2.0", id, result: update });
        controller.enqueue(encoder.encode(`id: ${seq}\ndata: ${data}\n\n`));
      },
      async cancel() {
        await iterator.return?.();
      },
    });
    return new Response(stream, {
      headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no" },
    });
  }

  // --- SendMessage --------------------------------------------------------------------------

  async #send(caller: Caller, endpoint: Endpoint, params: unknown): Promise<unknown> {
    const started = await this.#start(caller, endpoint, params);
    if ("message" in started) return started;
    const { record, blocking } = started;
    if (blocking) await this.#finished(caller, record.task.id);
    const now = await this.#task(caller, record.task.id);
    const failure = invalidInput(now);
    if (failure) throw failure;
    return { task: now.task };
  }

  async #sendStreaming(
    caller: Caller,
    endpoint: Endpoint,
    params: unknown,
  ): Promise<AsyncIterable<{ seq: number; update: Update }>> {
    const started = await this.#start(caller, endpoint, params);
    if ("message" in started) {
      return (async function* () {
        yield { seq: 1, update: started };
      })();
    }
    return this.#follow(caller, started.record.task.id, 0);
  }

  /**
   * Starts the task a message asks for (or finds the one its id already started), or, for a
   * fire-and-forget method, sends it and returns the acknowledgement.
   */
  async #start(
    caller: Caller,
    endpoint: Endpoint,
    params: unknown,
  ): Promise<{ record: TaskRecord; blocking: boolean } | { message: a2a.A2AMessage }> {
    const p = parse(a2a.a2aSendParamsSchema, params);
    const message = p.message;
    const blocking = p.configuration?.returnImmediately !== true;
    const existing = await this.tasks.taskOfMessage(caller.agent, message.messageId);
    if (existing) {
      const record = await this.#task(caller, existing);
      return { record, blocking };
    }
    if (message.taskId) {
      const record = await this.tasks.get(caller.agent, message.taskId);
      if (!record) throw new Refusal({ code: E.TASK_NOT_FOUND, message: `no task ${message.taskId}` });
      throw new Refusal({
        code: E.UNSUPPORTED_OPERATION,
        message: "a crosstalk task is one call: send a new message without taskId",
      });
    }
    const { to, method, info } = this.#route(endpoint, message);
    const input = inputOf(message);
    const session = this.#caller(caller);
    const meta = message.metadata ?? {};
    const timeoutMs = clampTimeout(meta[a2a.A2A_METADATA.timeoutMs]);

    if (info?.oneWay) {
      const frame: Extract<ClientFrame, { type: "rpc.send" }> = {
        type: "rpc.send",
        ref: "a2a",
        id: message.messageId,
        to,
        method,
        input,
      };
      this.#authorize(session, frame);
      const outcome = await this.deps.inbox.send(session, frame);
      if (outcome && "error" in outcome) throw new Refusal(crosstalkError(outcome.error));
      const recipients = outcome && "reply" in outcome ? outcome.reply.recipients : [];
      return {
        message: {
          messageId: uuidv7(),
          role: "ROLE_AGENT",
          ...(message.contextId ? { contextId: message.contextId } : {}),
          parts: [{ data: { sent: message.messageId, recipients } }],
          metadata: { method },
        },
      };
    }

    this.#authorize(session, callFrame({ ref: "check", to, method, input, timeoutMs }));
    const id = uuidv7();
    const contextId = message.contextId ?? uuidv7();
    const record: TaskRecord = {
      task: {
        id,
        contextId,
        status: { state: "TASK_STATE_SUBMITTED", timestamp: iso(this.deps.ctx.now()) },
        history: [{ ...message, taskId: id, contextId }],
        metadata: { method, target: typeof to === "string" ? to : `@${to.role}` },
      },
      call: { to, method, input, timeoutMs },
      seq: 0,
      updatedAt: this.deps.ctx.now(),
    };
    await this.tasks.create(caller.agent, record, message.messageId);
    void this.#run(caller, record);
    return { record, blocking };
  }

  /** Which target and method a message names, from the endpoint, its metadata and the roster. */
  #route(endpoint: Endpoint, message: a2a.A2AMessage): { to: Target; method: string; info?: MethodInfo } {
    const meta = message.metadata ?? {};
    const named = (key: string) => (typeof meta[key] === "string" ? (meta[key] as string) : undefined);
    let method = named(a2a.A2A_METADATA.method);
    const presence = this.deps.ctx.presence;
    if ("agent" in endpoint) {
      const session = presence.get(endpoint.agent);
      if (!method) {
        if (session?.methods.length === 1) method = session.methods[0] as string;
        else
          throw new Refusal({
            code: E.INVALID_PARAMS,
            message: `name the method in message metadata.method; ${endpoint.agent} serves ${JSON.stringify(session?.methods ?? [])}`,
          });
      }
      return { to: endpoint.agent, method, info: session ? this.deps.router.infoOf(session, method) : undefined };
    }
    if (!method) throw new Refusal({ code: E.INVALID_PARAMS, message: "name the method in message metadata.method" });
    const agent = named(a2a.A2A_METADATA.agent);
    if (agent) {
      const session = presence.get(agent);
      return { to: agent, method, info: session ? this.deps.router.infoOf(session, method) : undefined };
    }
    let role = named(a2a.A2A_METADATA.role);
    const serving = [...presence.sessions()].filter((s) => s.methods.includes(method) && (!role || s.role === role));
    if (!role) {
      const roles = [...new Set(serving.map((s) => s.role))];
      if (roles.length !== 1)
        throw new Refusal({
          code: E.INVALID_PARAMS,
          message: `name the role in message metadata.role; ${method} is served by roles ${JSON.stringify(roles)}`,
        });
      role = roles[0] as string;
    }
    const first = serving[0];
    return { to: { role }, method, info: first ? this.deps.router.infoOf(first, method) : undefined };
  }

  #authorize(session: GatewayCaller, frame: ClientFrame): void {
    const denied = authorize(session, "send", { frame });
    if (denied) throw new Refusal(crosstalkError(denied), 403);
  }

  /** Runs a task's call through the router and records what happens, until it ends. */
  async #run(caller: Caller, record: TaskRecord): Promise<void> {
    const key = `${caller.agent}|${record.task.id}`;
    if (this.#running.has(key)) return;
    this.#running.add(key);
    const id = record.task.id;
    const session = this.#caller(caller);
    const task = () => this.tasks.get(caller.agent, id);
    const status = (state: a2a.TaskState, message?: a2a.A2AMessage) => ({
      state,
      timestamp: iso(this.deps.ctx.now()),
      ...(message ? { message } : {}),
    });
    const agentMessage = (parts: a2a.A2APart[]): a2a.A2AMessage => ({
      messageId: uuidv7(),
      role: "ROLE_AGENT",
      taskId: id,
      ...(record.task.contextId ? { contextId: record.task.contextId } : {}),
      parts,
    });
    const setStatus = (s: a2a.A2AStatus) =>
      this.tasks.update(
        caller.agent,
        id,
        { statusUpdate: { taskId: id, contextId: record.task.contextId, status: s } },
        (r) => {
          r.task.status = s;
          r.updatedAt = this.deps.ctx.now();
          if (s.message) r.task.history = [...(r.task.history ?? []), s.message];
        },
      );
    try {
      const current = await task();
      if (!current || TERMINAL_STATES.has(current.task.status.state)) return;
      if (current.task.status.state === "TASK_STATE_SUBMITTED") await setStatus(status("TASK_STATE_WORKING"));
      const answer = await new Promise<Extract<RoomFrame, { type: "rpc.response" }>>((resolve) => {
        const stop = session.listen(id, (frame) => {
          if (frame.type === "rpc.progress")
            void setStatus(status("TASK_STATE_WORKING", agentMessage([{ data: frame.data }])));
          else if (frame.type === "rpc.response") {
            stop();
            resolve(frame);
          }
        });
        void this.deps.router.call(session, callFrame({ ref: id, idempotencyKey: id, ...record.call }));
      });
      if (answer.ok) {
        const artifact: a2a.A2AArtifact = {
          artifactId: `${id}-output`,
          name: "output",
          parts: [{ data: answer.output }],
        };
        await this.tasks.update(
          caller.agent,
          id,
          { artifactUpdate: { taskId: id, contextId: record.task.contextId, artifact, lastChunk: true } },
          (r) => {
            r.task.artifacts = [artifact];
          },
        );
        await setStatus(status("TASK_STATE_COMPLETED"));
      } else {
        const failure = agentMessage([
          { text: `${answer.error.code}: ${answer.error.message}` },
          { data: answer.error as unknown as Json },
        ]);
        await setStatus(status(stateOf(answer.error.code), failure));
      }
    } catch (error) {
      console.error(`[crosstalk ${this.#team()}] a2a task ${id} failed`, error);
    } finally {
      this.#running.delete(key);
    }
  }

  /** Resolves once the task is in a terminal or interrupted state. */
  async #finished(caller: Caller, id: string): Promise<void> {
    for await (const { update } of this.#follow(caller, id, 0, { replay: false })) void update;
  }

  // --- tasks ----------------------------------------------------------------------------------

  /** The caller's task (a task left running by a restart is called again), or TaskNotFound. */
  async #task(caller: Caller, id: string): Promise<TaskRecord> {
    const record = await this.tasks.get(caller.agent, id);
    if (!record) throw new Refusal({ code: E.TASK_NOT_FOUND, message: `no task ${id}` });
    const state = record.task.status.state;
    if (!TERMINAL_STATES.has(state) && !this.#running.has(`${caller.agent}|${id}`)) void this.#run(caller, record);
    return record;
  }

  async #list(caller: Caller, p: ReturnType<typeof a2a.a2aListTasksParamsSchema.parse>): Promise<unknown> {
    const all = (await this.tasks.list(caller.agent)).filter(
      (r) => (!p.contextId || r.task.contextId === p.contextId) && (!p.status || r.task.status.state === p.status),
    );
    const offset = Number(p.pageToken || 0) || 0;
    const pageSize = p.pageSize ?? 50;
    const page = all.slice(offset, offset + pageSize).map((r) => {
      const { artifacts, ...rest } = trimHistory(r.task, p.historyLength);
      return p.includeArtifacts && artifacts ? { ...rest, artifacts } : rest;
    });
    const next = offset + pageSize < all.length ? String(offset + pageSize) : "";
    return { tasks: page, nextPageToken: next, pageSize, totalSize: all.length };
  }

  async #cancel(caller: Caller, id: string): Promise<unknown> {
    const record = await this.#task(caller, id);
    if (TERMINAL_STATES.has(record.task.status.state))
      throw new Refusal({ code: E.TASK_NOT_CANCELABLE, message: `task ${id} is ${record.task.status.state}` });
    const aborted = await this.deps.router.abort(this.#caller(caller), id);
    if (!aborted) {
      // Not in flight here (the call ended meanwhile, or is being re-issued): record it.
      const status = { state: "TASK_STATE_CANCELED", timestamp: iso(this.deps.ctx.now()) };
      await this.tasks.update(caller.agent, id, { statusUpdate: { taskId: id, status } }, (r) => {
        r.task.status = status;
      });
    }
    await this.#finished(caller, id);
    return (await this.#task(caller, id)).task;
  }

  /** `SubscribeToTask`: after `Last-Event-ID` the updates that followed it, else the task as it stands; then live. */
  async #subscribe(
    caller: Caller,
    id: string,
    after: number | null,
  ): Promise<AsyncIterable<{ seq: number; update: Update }>> {
    await this.#task(caller, id);
    if (after !== null) return this.#follow(caller, id, after);
    return this.#follow(caller, id, 0, { snapshot: true });
  }

  /**
   * A task's updates after `after`, stored ones first, then live ones as they are stored,
   * ending after a terminal or interrupted state. `snapshot`: start with the task as it
   * stands instead of replaying; `replay: false`: only wait for the end.
   */
  async *#follow(
    caller: Caller,
    id: string,
    after: number,
    { snapshot = false, replay = true } = {},
  ): AsyncGenerator<{ seq: number; update: Update }> {
    const queue: { seq: number; update: Update }[] = [];
    let wake: (() => void) | null = null;
    const stop = this.tasks.listen(caller.agent, id, (seq, update) => {
      queue.push({ seq, update });
      wake?.();
    });
    try {
      await this.tasks.settled(caller.agent, id);
      let last = after;
      const record = await this.tasks.get(caller.agent, id);
      if (!record) return;
      if (snapshot) {
        last = record.seq;
        yield { seq: last, update: { task: record.task } };
        if (closes(record.task.status.state)) return;
      } else if (!replay) {
        last = record.seq;
        if (closes(record.task.status.state)) return;
      } else {
        for (const stored of await this.tasks.updates(caller.agent, id, after)) {
          if (stored.seq <= last) continue;
          last = stored.seq;
          yield stored;
          if (ends(stored.update)) return;
        }
        if (closes(record.task.status.state) && record.seq <= last) return;
      }
      for (;;) {
        const next = queue.shift();
        if (!next) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = null;
          continue;
        }
        if (next.seq <= last) continue;
        last = next.seq;
        if (replay || snapshot) yield next;
        if (ends(next.update)) return;
      }
    } finally {
      stop();
    }
  }

  /** The calling agent's gateway session, with its current permissions. */
  #caller(principal: Caller): GatewayCaller {
    let session = this.#callers.get(principal.agent);
    if (!session || session.role !== principal.role) {
      session = new GatewayCaller({
        n: -++this.#nextCaller,
        socket: { send() {}, close() {} },
        agent: principal.agent,
        role: principal.role,
        instance: `a2a-${principal.agent}`,
        connectedAt: this.deps.ctx.now(),
        metrics: this.deps.ctx.metrics,
        ...(principal.scope ? { scope: principal.scope } : {}),
      });
      this.#callers.set(principal.agent, session);
    }
    if (principal.grants) session.grants = principal.grants;
    return session;
  }
}

// ---------------------------------------------------------------------------------------------

function parse<T>(
  schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: unknown } },
  value: unknown,
): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = (parsed.error as { issues?: unknown }).issues;
    throw new Refusal({ code: E.INVALID_PARAMS, message: "invalid params", data: issues });
  }
  return parsed.data;
}

function callFrame(c: {
  ref: string;
  to: Target;
  method: string;
  input: Json;
  timeoutMs: number;
  idempotencyKey?: string;
}): Extract<ClientFrame, { type: "rpc.call" }> {
  return {
    type: "rpc.call",
    ref: c.ref,
    to: c.to,
    method: c.method,
    input: c.input,
    timeoutMs: c.timeoutMs,
    ...(c.idempotencyKey
      ? { idempotencyKey: c.idempotencyKey, callId: c.idempotencyKey, correlationId: c.idempotencyKey }
      : {}),
  };
}

/** The call's input: the first `data` part, else the first `text` part, else null. */
function inputOf(message: a2a.A2AMessage): Json {
  const data = message.parts.find((p) => p.data !== undefined);
  if (data) return data.data as Json;
  const text = message.parts.find((p) => typeof p.text === "string");
  return text ? (text.text as string) : null;
}

/** What a crosstalk error code makes of the task. */
function stateOf(code: ErrorCode): a2a.TaskState {
  switch (code) {
    case "NO_ROUTE":
    case "OVERLOADED":
    case "FORBIDDEN":
    case "UNAUTHORIZED":
    case "INVALID_INPUT":
      return "TASK_STATE_REJECTED";
    case "CANCELLED":
      return "TASK_STATE_CANCELED";
    default:
      return "TASK_STATE_FAILED";
  }
}

/** A task rejected for invalid input answers `SendMessage` with -32602 and the zod issues. */
function invalidInput(record: TaskRecord): Refusal | null {
  const status = record.task.status;
  if (status.state !== "TASK_STATE_REJECTED") return null;
  const error = status.message?.parts.find((p) => p.data !== undefined)?.data as ErrorBody | undefined;
  if (error?.code !== "INVALID_INPUT") return null;
  return new Refusal({
    code: E.INVALID_PARAMS,
    message: error.message,
    data: { taskId: record.task.id, crosstalk: error },
  });
}

function crosstalkError(error: ErrorBody): RpcError {
  const code =
    error.code === "INVALID_INPUT" || error.code === "INVALID_ARGUMENT" ? E.INVALID_PARAMS : E.INVALID_REQUEST;
  return { code, message: `${error.code}: ${error.message}`, data: { crosstalk: error } };
}

function skill(id: string, method: string, info: MethodInfo | undefined, tags: string[]): Record<string, unknown> {
  return {
    id,
    name: method,
    description: info?.description ?? `crosstalk method ${method}${info?.oneWay ? " (fire-and-forget)" : ""}`,
    tags: [...tags, info?.oneWay ? "one-way" : "call"],
    inputModes: ["application/json", "text/plain"],
    outputModes: ["application/json"],
  };
}

function schemaOf(info: MethodInfo): Record<string, unknown> {
  return { ...(info.input ? { input: info.input } : {}), ...(info.output ? { output: info.output } : {}) };
}

function trimHistory(task: a2a.A2ATask, historyLength: number | undefined): a2a.A2ATask {
  if (historyLength === undefined || !task.history) return task;
  return { ...task, history: historyLength === 0 ? [] : task.history.slice(-historyLength) };
}

function clampTimeout(value: unknown): number {
  const n = typeof value === "number" && Number.isInteger(value) ? value : a2a.A2A_DEFAULT_TIMEOUT_MS;
  return Math.min(Math.max(n, 1), 3_600_000);
}

function lastEventId(req: Request): number | null {
  const value = req.headers.get("Last-Event-ID");
  if (value === null) return null;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 ? n : null;
}

const closes = (state: string) => TERMINAL_STATES.has(state) || INTERRUPTED_STATES.has(state);
const ends = (update: Update) =>
  ("statusUpdate" in update && closes(update.statusUpdate.status.state)) ||
  ("task" in update && closes(update.task.status.state));
const iso = (ms: number) => new Date(ms).toISOString();

async function digest(text: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(hash).slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
