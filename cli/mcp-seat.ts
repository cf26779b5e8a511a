/**
 * An MCP server that is one agent of a team: an LLM in any MCP host gets the team's
 * primitives as tools and its namespaces and streams as resources, acting with the token's
 * identity and permissions (the room decides; this only mirrors what it said).
 *
 * One {@link McpSeat} holds the team connection; each MCP session (one over stdio, any number
 * over Streamable HTTP) gets its own low-level `Server` from {@link McpSeat.session}. The
 * tools are computed on every `tools/list` from the live roster, so they follow it; the
 * sessions are told (`notifications/tools/list_changed`) when the set changes.
 *
 * Not re-exported from the package entry point; `cli/mcp.ts` runs it and `test/mcp.test.ts`
 * exercises it through the SDK's own client.
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  type CallToolResult,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
  type Resource,
  SubscribeRequestSchema,
  type Tool,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { type AgentInfo, CrosstalkError, ERROR_CODES, type Target, type Team, uuidv7 } from "../client/node.ts";
import {
  type Action,
  ALLOW_ALL,
  eventTypeSchema,
  Grants,
  methodSchema,
  nameSchema,
  patternSchema,
  wholeStream,
} from "../protocol/index.ts";

export type SeatOptions = {
  /** Namespaces to offer as resources from the start (besides those the permissions name). */
  namespaces?: string[];
  /** Streams to offer as resources from the start (besides `main` and those the permissions name). */
  streams?: string[];
  /** Default deadline of a method call (ms). */
  callTimeoutMs?: number;
  /** The server's version, as MCP's `serverInfo` reports it. */
  version?: string;
};

/** A tool for one method served in the team. */
type MethodTool = { name: string; method: string; servers: AgentInfo[] };

const BUILTIN_TOOLS = ["publish", "state_get", "state_set", "state_update", "history", "send"] as const;
type Builtin = (typeof BUILTIN_TOOLS)[number];

const HISTORY_LIMIT = 200;
const RESOURCE_EVENTS = 20;
const MAX_TIMEOUT_MS = 3_600_000;

// --- tool inputs: parsed with zod at the boundary, advertised as the same schema's JSON Schema

const json = (description: string) => z.unknown().describe(description);
const target = z
  .string()
  .min(1)
  .describe("an agent id, or @<role> for the least busy live agent of that role (send: every live agent of it)");
const correlationId = z
  .string()
  .min(1)
  .max(128)
  .optional()
  .describe("the piece of work this belongs to (default: a fresh id, returned in the result): `crosstalk trace <id>`");
const entity = z.record(z.string(), z.unknown());

const builtinInputs = {
  publish: z
    .object({
      type: eventTypeSchema.describe("event type, dotted tokens like deal.closed"),
      data: json("the event's data (JSON)"),
      stream: nameSchema.default("main").describe("stream to append to"),
      id: z.string().min(1).max(128).optional().describe("event id: publishing an id again is a no-op (duplicate)"),
      key: z.string().min(1).max(256).optional().describe("ordering key for consumer groups"),
      correlationId,
      causationId: z.string().min(1).max(128).optional().describe("the event or call that caused this one"),
    })
    .strict(),
  state_get: z
    .object({
      ns: nameSchema.describe("namespace"),
      key: z.string().min(1).optional().describe("entity key (default: the whole namespace)"),
    })
    .strict(),
  state_set: z
    .object({
      ns: nameSchema.describe("namespace"),
      key: z.string().min(1).describe("entity key"),
      value: entity.describe("the entity (a JSON object); replaces the current one"),
    })
    .strict(),
  state_update: z
    .object({
      ns: nameSchema.describe("namespace"),
      key: z.string().min(1).describe("entity key"),
      patch: entity.describe("fields to change (a JSON object); other fields, and concurrent edits of them, stay"),
    })
    .strict(),
  history: z
    .object({
      stream: nameSchema.default("main").describe("stream to read"),
      from: z.number().int().min(1).optional().describe("first seq (default: the last `limit` events)"),
      limit: z.number().int().min(1).max(HISTORY_LIMIT).default(20).describe("most events to return"),
      types: z.array(patternSchema).max(20).optional().describe("type patterns to keep, NATS style (deal.*, deal.>)"),
    })
    .strict(),
  send: z
    .object({
      to: target,
      method: methodSchema.describe("method name"),
      input: json("the message's input (JSON)"),
      correlationId,
    })
    .strict(),
} satisfies Record<Builtin, z.ZodType>;

const methodInput = z
  .object({
    input: json("the method's input (JSON). Its schema is not announced by the team: see the description"),
    target: target.optional(),
    timeoutMs: z.number().int().min(1).max(MAX_TIMEOUT_MS).optional().describe("deadline for the whole call (ms)"),
    idempotencyKey: z
      .string()
      .min(1)
      .max(128)
      .optional()
      .describe("run at most once per key: a retry with the same key gets the first result"),
    correlationId,
  })
  .strict();

const inputSchema = (schema: z.ZodType): Tool["inputSchema"] => {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: "input" }) as Record<string, unknown>;
  return rest as Tool["inputSchema"];
};
const BUILTIN_SCHEMAS = Object.fromEntries(
  BUILTIN_TOOLS.map((name) => [name, inputSchema(builtinInputs[name])]),
) as Record<Builtin, Tool["inputSchema"]>;
const METHOD_SCHEMA = inputSchema(methodInput);

/** The method tool's schema with the method's own input schema (announced by its server) for `input`. */
const withInput = (input: Record<string, unknown>): Tool["inputSchema"] => {
  const properties = { ...(METHOD_SCHEMA.properties as Record<string, unknown>), input };
  return { ...METHOD_SCHEMA, properties, required: ["input"] } as Tool["inputSchema"];
};

/** What each built-in tool needs (it is listed when some resource could be permitted). */
const BUILTIN_ACTION: Record<Builtin, Action> = {
  publish: "stream.publish",
  state_get: "state.read",
  state_set: "state.write",
  state_update: "state.write",
  history: "stream.subscribe",
  send: "inbox.send",
};

/** MCP hosts accept tool names of `[A-Za-z0-9_-]{1,64}`; methods may also have `.` and `:`. */
const toolNameOf = (method: string): string => `call_${method.replace(/[^A-Za-z0-9_-]/g, "_")}`.slice(0, 60);

const toTarget = (to: string): Target => (to.startsWith("@") ? { role: to.slice(1) } : to);

/** Does a rule's action part cover `action`? */
const ruleIsAbout = (rule: string, action: Action): boolean =>
  new Grants({ allow: [rule.split(":")[0] ?? ""], deny: [] }).permits(action, "x");

/** The agent's rules for `action`, for tool descriptions ("allow state.write:deals"). */
function rulesFor(team: Team, action: Action): string {
  const { allow, deny, scope } = team.permissions ?? ALLOW_ALL;
  const about = (rule: string) => ruleIsAbout(rule, action);
  const parts = [allow.some(about) ? `allow ${allow.filter(about).join(", ")}` : "no allow rule"];
  if (deny.some(about)) parts.push(`deny ${deny.filter(about).join(", ")}`);
  if (scope)
    parts.push(scope.some(about) ? `token scope ${scope.filter(about).join(", ")}` : "outside the token's scope");
  return parts.join("; ");
}

/** Literal resources the agent's rules name for `action` (`state.read:deals` → deals). */
function namedIn(team: Team, action: Action): string[] {
  const { allow, scope = [] } = team.permissions ?? ALLOW_ALL;
  const names: string[] = [];
  for (const rule of [...allow, ...scope]) {
    const colon = rule.indexOf(":");
    if (colon < 0 || !ruleIsAbout(rule, action)) continue;
    const first = rule.slice(colon + 1).split("/")[0] ?? "";
    if (first === "{sub}") names.push(team.agent);
    else if (nameSchema.safeParse(first).success) names.push(first);
  }
  return names;
}

/**
 * The team connection shared by every MCP session of this process, and what the sessions
 * are offered from it.
 */
export class McpSeat {
  readonly #team: Team;
  readonly #options: SeatOptions;
  readonly #sessions = new Set<Session>();
  readonly #namespaces = new Set<string>();
  readonly #streams = new Set<string>(["main"]);
  #toolsSignature = "";
  #resourcesSignature = "";
  readonly #stop: (() => void)[] = [];

  constructor(team: Team, options: SeatOptions = {}) {
    this.#team = team;
    this.#options = options;
    for (const ns of options.namespaces ?? []) this.#namespaces.add(ns);
    for (const stream of options.streams ?? []) this.#streams.add(stream);
    this.#toolsSignature = this.#signature();
    this.#resourcesSignature = this.#resourceSignature();
    const changed = () => {
      const tools = this.#signature();
      if (tools !== this.#toolsSignature) {
        this.#toolsSignature = tools;
        for (const s of this.#sessions) s.server.sendToolListChanged().catch(() => {});
      }
      this.#resourcesChanged();
    };
    team.on("agents", changed);
    team.on("permissions", changed);
    this.#stop.push(
      () => team.off("agents", changed),
      () => team.off("permissions", changed),
    );
  }

  /** A new MCP session's server: connect it to a transport. It forgets its subscriptions on close. */
  session(): Server {
    const team = this.#team;
    const server = new Server(
      { name: "crosstalk", title: `crosstalk team ${team.team}`, version: this.#options.version ?? "0.0.0" },
      {
        capabilities: { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true } },
        instructions: [
          `You are agent ${team.agent} (role ${team.role}) of the crosstalk team ${team.team}.`,
          "call_<method> tools call teammates; publish/history use the team's event streams;",
          "state_* read and write its shared state; send leaves a message in a teammate's inbox.",
          "Errors name a crosstalk code and what to do about it.",
        ].join(" "),
      },
    );
    const session: Session = { server, subscriptions: new Map() };
    this.#sessions.add(session);
    server.onclose = () => {
      for (const stop of session.subscriptions.values()) stop();
      session.subscriptions.clear();
      this.#sessions.delete(session);
    };

    server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: this.#tools() }));
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const { name, arguments: args = {} } = request.params;
      const progressToken = request.params._meta?.progressToken;
      let progress = 0;
      const onProgress =
        progressToken === undefined
          ? undefined
          : (data: unknown) =>
              void extra
                .sendNotification({
                  method: "notifications/progress",
                  params: { progressToken, progress: ++progress, message: JSON.stringify(data) },
                })
                .catch(() => {});
      try {
        return await this.#callTool(name, args, { signal: extra.signal, onProgress });
      } catch (error) {
        return toolError(error);
      }
    });

    server.setRequestHandler(ListResourcesRequestSchema, () => ({ resources: this.#resources() }));
    server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
      resourceTemplates: [
        {
          uriTemplate: `crosstalk://${team.team}/state/{ns}`,
          name: "namespace",
          title: "A shared-state namespace",
          description: "Every entity of a namespace as JSON. Subscribe to hear of every change.",
          mimeType: "application/json",
        },
        {
          uriTemplate: `crosstalk://${team.team}/streams/{stream}`,
          name: "stream",
          title: "An event stream",
          description: `The last ${RESOURCE_EVENTS} events of a stream as JSON. Subscribe to hear of every new event.`,
          mimeType: "application/json",
        },
      ],
    }));
    server.setRequestHandler(ReadResourceRequestSchema, async (request) => {
      const { uri } = request.params;
      const target = this.#parseUri(uri);
      const text =
        target.kind === "state"
          ? JSON.stringify(await this.#readNamespace(target.name))
          : JSON.stringify(await this.#page({ stream: target.name, limit: RESOURCE_EVENTS }));
      return { contents: [{ uri, mimeType: "application/json", text }] };
    });
    server.setRequestHandler(SubscribeRequestSchema, async (request) => {
      const { uri } = request.params;
      if (session.subscriptions.has(uri)) return {};
      const target = this.#parseUri(uri);
      const notify = coalesced(() => server.sendResourceUpdated({ uri }).catch(() => {}));
      if (target.kind === "state") {
        const ns = this.#namespace(target.name);
        await ns.ready;
        session.subscriptions.set(uri, ns.observe(notify));
      } else {
        this.#touchStream(target.name);
        const sub = team.subscribe(">", notify, { stream: target.name, from: "end" });
        session.subscriptions.set(uri, () => sub.unsubscribe());
        try {
          await sub.ready;
        } catch (error) {
          session.subscriptions.delete(uri);
          sub.unsubscribe();
          throw error;
        }
      }
      return {};
    });
    server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
      session.subscriptions.get(request.params.uri)?.();
      session.subscriptions.delete(request.params.uri);
      return {};
    });
    return server;
  }

  /** Closes every session (the team connection is the caller's). */
  async close(): Promise<void> {
    for (const stop of this.#stop) stop();
    await Promise.all([...this.#sessions].map((s) => s.server.close().catch(() => {})));
  }

  // --- tools ------------------------------------------------------------------------------

  #grants(): Grants {
    return new Grants(this.#team.permissions ?? ALLOW_ALL);
  }

  /**
   * One tool per method teammates serve now, by method name; `callable` keeps those this agent
   * may call (the list), without it the names stay the same and a forbidden call is refused
   * by the client with FORBIDDEN (not "no such tool").
   */
  #methodTools({ callable }: { callable: boolean }): MethodTool[] {
    const team = this.#team;
    const grants = this.#grants();
    const byMethod = new Map<string, AgentInfo[]>();
    for (const agent of team.agents()) {
      if (agent.agent === team.agent) continue;
      for (const method of agent.methods) byMethod.set(method, [...(byMethod.get(method) ?? []), agent]);
    }
    const taken = new Set<string>(BUILTIN_TOOLS);
    const tools: MethodTool[] = [];
    for (const method of [...byMethod.keys()].sort()) {
      let name = toolNameOf(method);
      for (let i = 2; taken.has(name); i++) name = `${toolNameOf(method)}_${i}`;
      taken.add(name);
      const servers = (byMethod.get(method) ?? [])
        .filter(
          (a) =>
            !callable ||
            grants.permits("rpc.call", `${a.agent}/${method}`) ||
            grants.permits("rpc.call", `@${a.role}/${method}`),
        )
        .sort((a, b) => a.agent.localeCompare(b.agent));
      if (servers.length > 0) tools.push({ name, method, servers });
    }
    return tools;
  }

  #tools(): Tool[] {
    const team = this.#team;
    const grants = this.#grants();
    const builtins: Tool[] = BUILTIN_TOOLS.filter((name) => grants.reaches(BUILTIN_ACTION[name], ">")).map((name) => ({
      name,
      description: `${BUILTIN_DESCRIPTIONS[name]} This agent's rules for ${BUILTIN_ACTION[name]}: ${rulesFor(team, BUILTIN_ACTION[name])}.`,
      inputSchema: BUILTIN_SCHEMAS[name],
    }));
    const methods: Tool[] = this.#methodTools({ callable: true }).map(({ name, method, servers }) => {
      // What the serving agent announced (its zod contract as JSON Schema), if it did.
      const info = servers.map((s) => s.info?.[method]).find((i) => i !== undefined);
      return {
        name,
        title: `call ${method}`,
        description: [
          `Calls the method "${method}" on a teammate of team ${team.team} and returns its output.`,
          ...(info?.description ? [info.description] : []),
          `Served now by ${servers.map((s) => `${s.agent} (role ${s.role})`).join(", ")};`,
          `without a target the call goes to ${describeTarget(defaultTarget(servers))}.`,
          info?.input
            ? "`input` follows the method's schema."
            : "The team does not announce the method's input schema: pass what it expects as JSON in `input`.",
        ].join(" "),
        inputSchema: info?.input ? withInput(info.input) : METHOD_SCHEMA,
      };
    });
    return [...builtins, ...methods];
  }

  #signature(): string {
    return JSON.stringify(this.#tools().map((t) => [t.name, t.description]));
  }

  async #callTool(
    name: string,
    args: Record<string, unknown>,
    how: { signal: AbortSignal; onProgress?: (data: unknown) => void },
  ): Promise<CallToolResult> {
    const team = this.#team;
    switch (name) {
      case "publish": {
        const a = parseArgs(builtinInputs.publish, args, name);
        const cid = a.correlationId ?? uuidv7();
        this.#touchStream(a.stream);
        const result = await team.publish(a.type, a.data, {
          stream: a.stream,
          correlationId: cid,
          ...(a.id !== undefined ? { id: a.id } : {}),
          ...(a.key !== undefined ? { key: a.key } : {}),
          ...(a.causationId !== undefined ? { causationId: a.causationId } : {}),
        });
        return ok(
          { id: result.id, stream: a.stream, seq: result.seq, ts: result.ts, duplicate: result.duplicate },
          cid,
        );
      }
      case "state_get": {
        const a = parseArgs(builtinInputs.state_get, args, name);
        const all = await this.#readNamespace(a.ns);
        if (a.key === undefined) return ok(all);
        const entity = all[a.key];
        if (entity === undefined)
          throw new CrosstalkError("NOT_FOUND", `no entity ${JSON.stringify(a.key)} in namespace ${a.ns}`);
        return ok(entity);
      }
      case "state_set":
      case "state_update": {
        const a =
          name === "state_set"
            ? parseArgs(builtinInputs.state_set, args, name)
            : parseArgs(builtinInputs.state_update, args, name);
        const ns = this.#namespace(a.ns);
        await ns.ready;
        if ("value" in a) ns.set(a.key, a.value as never);
        else ns.update(a.key, a.patch as never);
        return ok({ ns: a.ns, key: a.key, value: ns.get(a.key) ?? null });
      }
      case "history": {
        const a = parseArgs(builtinInputs.history, args, name);
        return ok(await this.#page(a));
      }
      case "send": {
        const a = parseArgs(builtinInputs.send, args, name);
        const cid = a.correlationId ?? uuidv7();
        const sent = await team.send(toTarget(a.to), a.method, a.input ?? null, { correlationId: cid });
        return ok({ id: sent.id, recipients: sent.recipients }, cid);
      }
    }
    const tool = this.#methodTools({ callable: false }).find((t) => t.name === name);
    if (!tool) {
      throw new CrosstalkError(
        "NO_ROUTE",
        `no tool ${JSON.stringify(name)}: no teammate serves such a method now (the tool list follows the roster; list the tools again)`,
      );
    }
    const a = parseArgs(methodInput, args, name);
    const cid = a.correlationId ?? uuidv7();
    const output = await team.call(
      a.target !== undefined ? toTarget(a.target) : defaultTarget(tool.servers),
      tool.method,
      a.input ?? null,
      {
        correlationId: cid,
        signal: how.signal,
        timeoutMs: a.timeoutMs ?? this.#options.callTimeoutMs ?? 30_000,
        ...(a.idempotencyKey !== undefined ? { idempotencyKey: a.idempotencyKey } : {}),
        ...(how.onProgress ? { onProgress: how.onProgress } : {}),
      },
    );
    return ok(output, cid);
  }

  // --- state and streams ------------------------------------------------------------------

  #namespace(name: string) {
    const ns = this.#team.state(name);
    if (!this.#namespaces.has(name)) {
      this.#namespaces.add(name);
      this.#resourcesChanged();
    }
    return ns;
  }

  async #readNamespace(name: string): Promise<Record<string, unknown>> {
    const ns = this.#namespace(name);
    await ns.ready;
    return ns.toJSON();
  }

  #touchStream(stream: string): void {
    if (this.#streams.has(stream)) return;
    this.#streams.add(stream);
    this.#resourcesChanged();
  }

  /** A page of a stream: from `from`, or the last `limit` events. */
  async #page(a: { stream: string; from?: number; limit: number; types?: string[] }) {
    const team = this.#team;
    this.#touchStream(a.stream);
    let from = a.from;
    if (from === undefined) {
      const head = await team
        .consumers(a.stream)
        .then((c) => c.head)
        .catch(() => 0);
      from = Math.max(1, head - a.limit + 1);
    }
    const events = [];
    for await (const event of team.history({
      stream: a.stream,
      from,
      limit: a.limit,
      ...(a.types ? { types: a.types } : {}),
    }))
      events.push(event);
    const last = events.at(-1);
    return { stream: a.stream, events, next: last ? last.seq + 1 : from };
  }

  // --- resources --------------------------------------------------------------------------

  #resources(): Resource[] {
    const team = this.#team;
    const grants = this.#grants();
    const namespaces = new Set([...this.#namespaces, ...namedIn(team, "state.read")]);
    const streams = new Set([...this.#streams, ...namedIn(team, "stream.subscribe")]);
    const list: Resource[] = [];
    for (const ns of [...namespaces].sort()) {
      if (!grants.permits("state.read", ns)) continue;
      list.push({
        uri: `crosstalk://${team.team}/state/${ns}`,
        name: `state/${ns}`,
        title: `namespace ${ns}`,
        description: `The shared-state namespace ${ns} of team ${team.team}, every entity as JSON.`,
        mimeType: "application/json",
      });
    }
    for (const stream of [...streams].sort()) {
      if (!grants.reaches("stream.subscribe", wholeStream(stream))) continue;
      list.push({
        uri: `crosstalk://${team.team}/streams/${stream}`,
        name: `streams/${stream}`,
        title: `stream ${stream}`,
        description: `The last ${RESOURCE_EVENTS} events of stream ${stream} of team ${team.team}.`,
        mimeType: "application/json",
      });
    }
    return list;
  }

  #resourceSignature(): string {
    return JSON.stringify(this.#resources().map((r) => r.uri));
  }

  #resourcesChanged(): void {
    const signature = this.#resourceSignature();
    if (signature === this.#resourcesSignature) return;
    this.#resourcesSignature = signature;
    for (const s of this.#sessions) s.server.sendResourceListChanged().catch(() => {});
  }

  #parseUri(uri: string): { kind: "state" | "streams"; name: string } {
    const prefix = `crosstalk://${this.#team.team}/`;
    const [kind, name, ...rest] = uri.startsWith(prefix) ? uri.slice(prefix.length).split("/") : [];
    if ((kind === "state" || kind === "streams") && name && rest.length === 0 && nameSchema.safeParse(name).success)
      return { kind, name };
    throw new CrosstalkError(
      "NOT_FOUND",
      `no resource ${uri}: this server has ${prefix}state/<namespace> and ${prefix}streams/<stream>`,
    );
  }
}

type Session = { server: Server; subscriptions: Map<string, () => void> };

const BUILTIN_DESCRIPTIONS: Record<Builtin, string> = {
  publish:
    "Publishes an event to a team stream (default main); resolves once the room stored it, with its seq. No event catalog is announced: use the team's event types.",
  state_get: "Reads a shared-state namespace, or one entity of it, as JSON.",
  state_set: "Writes an entity (a JSON object) into a shared-state namespace, replacing it.",
  state_update:
    "Changes some fields of an entity in a shared-state namespace; concurrent edits of other fields survive.",
  history: `Reads a page of a stream's events (at most ${HISTORY_LIMIT}): from a seq, or the most recent ones. Returns {events, next}.`,
  send: "Sends a fire-and-forget message to a teammate (kept in its inbox while it is offline) or to every live agent of a role (@role).",
};

/** Calls go to the method's role when all its servers share one (the room picks the least busy), else to the first. */
function defaultTarget(servers: AgentInfo[]): Target {
  const roles = new Set(servers.map((s) => s.role));
  const [only] = roles;
  return roles.size === 1 && only !== undefined ? { role: only } : (servers[0]?.agent ?? "");
}

const describeTarget = (t: Target): string =>
  typeof t === "string" ? `agent ${t}` : `the least busy live agent of role ${t.role}`;

function parseArgs<S extends z.ZodType>(schema: S, args: unknown, tool: string): z.output<S> {
  const parsed = schema.safeParse(args);
  if (parsed.success) return parsed.data;
  throw new CrosstalkError(
    "INVALID_ARGUMENT",
    `bad arguments for ${tool}: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(arguments)"}: ${i.message}`).join("; ")}`,
    { issues: JSON.parse(JSON.stringify(parsed.error.issues)) },
  );
}

function ok(result: unknown, correlationId?: string): CallToolResult {
  return {
    content: [{ type: "text", text: JSON.stringify(result ?? null) }],
    structuredContent: { result: result ?? null, ...(correlationId ? { correlationId } : {}) },
  };
}

/** A failure as an MCP tool error: the crosstalk code, the message, and what to do (`ERROR_CODES[code].doc`). */
export function toolError(error: unknown): CallToolResult {
  const e =
    error instanceof CrosstalkError
      ? error
      : new CrosstalkError("INTERNAL", error instanceof Error ? error.message : String(error));
  const { doc, retryable } = ERROR_CODES[e.code];
  return {
    isError: true,
    content: [
      {
        type: "text",
        text: `${e.code}: ${e.message}\nWhat to do: ${doc}${retryable ? " (retryable)" : ""}`,
      },
    ],
    structuredContent: {
      error: {
        code: e.code,
        message: e.message,
        retryable,
        doc,
        ...(e.details !== undefined ? { details: e.details } : {}),
      },
    },
  };
}

/** Runs `fn` once for a burst of calls in the same turn (a transaction touching many keys). */
function coalesced(fn: () => unknown): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      fn();
    });
  };
}
