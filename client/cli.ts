/**
 * The `crosstalk` command line (Node only): follow a stream, read shared state and the
 * roster, call and message agents, publish, replay history into NDJSON and print the causal
 * tree of one piece of work. `bin/crosstalk.js` runs {@link main}; tests call it in-process
 * with their own stdout/stderr.
 *
 * Exit codes: 0 success, 1 runtime failure (the room refused, a call failed, a key is
 * missing), 2 usage error (bad arguments or options).
 */

import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import {
  type AgentInfo,
  CrosstalkError,
  eventTypeSchema,
  type Json,
  methodSchema,
  nameSchema,
  patternSchema,
  type StoredEvent,
  type Target,
} from "../protocol/index.ts";
import { connect } from "./node.ts";
import type { Team } from "./team.ts";
import type { TraceNode } from "./trace.ts";

/** A writable with what a terminal stream adds (`process.stdout` has both). */
export type Output = Writable & { isTTY?: boolean; columns?: number };

export type CliIO = {
  stdout: Output;
  stderr: Output;
  /** Where defaults come from (`CROSSTALK_HOST`, `CROSSTALK_TOKEN`, `NO_COLOR`). */
  env: Record<string, string | undefined>;
  /** Aborting it stops a running `tail` as SIGINT does. */
  signal?: AbortSignal;
};

const DEFAULT_HOST = "127.0.0.1:1999";

type Globals = { host: string; token?: string; agent?: string; role: string; connectTimeout: number };

/** A runtime failure with a message for the user: exit 1, no code prefix. */
class CliFailure extends Error {}

/**
 * Runs the CLI with `argv` as the user typed it (no `node`/script prefix) and resolves with
 * the exit code. Never calls `process.exit`.
 */
export async function main(argv: string[], io: Partial<CliIO> = {}): Promise<number> {
  const ctx: CliIO = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    signal: io.signal,
  };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed help or the usage error.
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version") return 0;
      if (error.code === "commander.help") return error.exitCode === 0 ? 0 : 2;
      return 2;
    }
    ctx.stderr.write(`${describeError(error)}\n`);
    return 1;
  }
}

/** How a failure reads on stderr: `CODE: message` for runtime errors. */
export function describeError(error: unknown): string {
  if (error instanceof CrosstalkError) return `${error.code}: ${printable(error.message)}`;
  if (error instanceof CliFailure) return printable(error.message);
  if (error instanceof Error) return `error: ${printable(error.message)}`;
  return `error: ${printable(String(error))}`;
}

// ---------------------------------------------------------------------------------------
// Commands

function buildProgram(ctx: CliIO): Command {
  const program = new Command("crosstalk")
    .description("Inspect and drive a crosstalk team room from the shell.")
    .configureOutput({
      writeOut: (s) => void ctx.stdout.write(s),
      writeErr: (s) => void ctx.stderr.write(s),
      getOutHelpWidth: () => ctx.stdout.columns ?? 100,
      getErrHelpWidth: () => ctx.stderr.columns ?? 100,
      getOutHasColors: () => useColor(ctx.stdout, ctx.env),
      getErrHasColors: () => useColor(ctx.stderr, ctx.env),
    })
    .exitOverride()
    .showHelpAfterError("(add --help for usage)")
    .addOption(
      new Option("--host <host>", "PartyKit host[:port] ($CROSSTALK_HOST)").default(
        ctx.env.CROSSTALK_HOST || DEFAULT_HOST,
      ),
    )
    .addOption(new Option("--token <token>", "auth token, sent as the token query parameter ($CROSSTALK_TOKEN)"))
    .addOption(new Option("--agent <id>", "agent id of this CLI (default: cli-<random>)").argParser(nameArg("agent")))
    .addOption(new Option("--role <role>", "role of this CLI").default("cli").argParser(nameArg("role")))
    .addOption(
      new Option("--connect-timeout <ms>", "give up connecting after this long").default(10_000).argParser(intArg(1)),
    );

  program
    .command("tail")
    .description("Follow a stream live, one line per event, until interrupted (SIGINT/SIGTERM).")
    .argument("<team>", "team name", nameArg("team"))
    .option("--stream <name>", "stream to follow", nameArg("stream"), "main")
    .option("--type <pattern>", "event type pattern, NATS style ('deal.*', 'deal.>')", patternArg, ">")
    .option("--from <where>", "start, end, a seq or an ISO time", parseFrom, "end")
    .option("--limit <n>", "exit after this many events", intArg(1))
    .option("--json", "print each stored event as one JSON line (NDJSON)")
    .action(async (team: string, opts: TailOptions, cmd: Command) => {
      await withTeam(ctx, cmd, team, (t) => tail(t, opts, ctx));
    });

  program
    .command("state")
    .description("Print a shared-state namespace, or one entity of it, as JSON.")
    .argument("<team>", "team name", nameArg("team"))
    .argument("<ns>", "namespace", nameArg("namespace"))
    .argument("[key]", "entity key (default: the whole namespace)")
    .action(async (team: string, ns: string, key: string | undefined, _opts: unknown, cmd: Command) => {
      await withTeam(ctx, cmd, team, async (t) => {
        const namespace = t.state(ns);
        await namespace.ready;
        if (key === undefined) return printJson(ctx.stdout, namespace.toJSON());
        const entity = namespace.get(key);
        if (entity === undefined) throw new CliFailure(`no entity ${JSON.stringify(key)} in namespace ${ns}`);
        printJson(ctx.stdout, entity);
      });
    });

  program
    .command("agents")
    .description("List the connected agents (this CLI excluded).")
    .argument("<team>", "team name", nameArg("team"))
    .option("--json", "print the roster as JSON")
    .action(async (team: string, opts: { json?: boolean }, cmd: Command) => {
      await withTeam(ctx, cmd, team, async (t) => {
        const agents = t
          .agents()
          .filter((a) => a.agent !== t.agent)
          .sort((a, b) => a.agent.localeCompare(b.agent));
        if (opts.json) printJson(ctx.stdout, agents);
        else ctx.stdout.write(`${formatAgents(agents)}\n`);
      });
    });

  program
    .command("call")
    .description("Call a method on an agent (or a role) and print its output as JSON.")
    .argument("<team>", "team name", nameArg("team"))
    .argument("<target>", "agent id (or role, with --role-target)", nameArg("target"))
    .argument("<method>", "method name", methodArg)
    .argument("<json>", "input, as JSON", jsonArg)
    .option("--timeout <ms>", "deadline for the whole call", intArg(1), 30_000)
    .option("--role-target", "treat <target> as a role: the least busy live agent of it answers")
    .action(
      async (
        team: string,
        target: string,
        method: string,
        input: unknown,
        opts: { timeout: number; roleTarget?: boolean },
        cmd: Command,
      ) => {
        await withTeam(ctx, cmd, team, async (t) => {
          const output = await t.call(toTarget(target, opts.roleTarget), method, input, { timeoutMs: opts.timeout });
          printJson(ctx.stdout, output);
        });
      },
    );

  program
    .command("publish")
    .description("Publish one event and print {id, seq, ts, duplicate}.")
    .argument("<team>", "team name", nameArg("team"))
    .argument("<type>", "event type, e.g. deal.closed", eventTypeArg)
    .argument("<json>", "event data, as JSON", jsonArg)
    .option("--stream <name>", "stream to publish to", nameArg("stream"), "main")
    .option("--id <id>", "event id (publishing an id again is a no-op: duplicate)", idArg("id"))
    .option("--key <key>", "ordering key for consumer groups")
    .option("--correlation-id <id>", "the piece of work this event belongs to", idArg("correlation id"))
    .option("--causation-id <id>", "the event or call that caused this one", idArg("causation id"))
    .action(
      async (
        team: string,
        type: string,
        data: unknown,
        opts: { stream: string; id?: string; key?: string; correlationId?: string; causationId?: string },
        cmd: Command,
      ) => {
        await withTeam(ctx, cmd, team, async (t) => {
          const result = await t.publish(type, data, {
            stream: opts.stream,
            ...(opts.id !== undefined ? { id: opts.id } : {}),
            ...(opts.key !== undefined ? { key: opts.key } : {}),
            ...(opts.correlationId !== undefined ? { correlationId: opts.correlationId } : {}),
            ...(opts.causationId !== undefined ? { causationId: opts.causationId } : {}),
          });
          printJson(ctx.stdout, { id: result.id, seq: result.seq, ts: result.ts, duplicate: result.duplicate });
        });
      },
    );

  program
    .command("send")
    .description("Fire-and-forget message (kept for offline agents); prints {id, recipients}.")
    .argument("<team>", "team name", nameArg("team"))
    .argument("<target>", "agent id (or role, with --role-target)", nameArg("target"))
    .argument("<method>", "method name", methodArg)
    .argument("<json>", "input, as JSON", jsonArg)
    .option("--role-target", "treat <target> as a role: every live agent of it gets the message")
    .action(
      async (
        team: string,
        target: string,
        method: string,
        input: unknown,
        opts: { roleTarget?: boolean },
        cmd: Command,
      ) => {
        await withTeam(ctx, cmd, team, async (t) => {
          const sent = await t.send(toTarget(target, opts.roleTarget), method, input);
          printJson(ctx.stdout, { id: sent.id, recipients: sent.recipients });
        });
      },
    );

  program
    .command("replay")
    .description("Write a stream's history (archive included) into a file as NDJSON.")
    .argument("<team>", "team name", nameArg("team"))
    .option("--stream <name>", "stream to read", nameArg("stream"), "main")
    .option("--from <seq>", "first seq", intArg(1), 1)
    .option("--to <seq>", "last seq (default: the head when the replay starts)", intArg(1))
    .requiredOption("--into <file>", "NDJSON file to write (replaced)")
    .option("--progress", "show a progress bar on stderr (default: when stderr is a terminal)")
    .option("--no-progress", "never show a progress bar")
    .action(async (team: string, opts: ReplayOptions, cmd: Command) => {
      if (opts.to !== undefined && opts.to < opts.from) cmd.error("error: --to must be >= --from", { exitCode: 2 });
      await withTeam(ctx, cmd, team, (t) => replay(t, opts, ctx));
    });

  program
    .command("trace")
    .description("Print the causal tree (causationId → id) of one correlationId: events, calls and messages.")
    .argument("<team>", "team name", nameArg("team"))
    .argument("<correlationId>", "the correlation id of the work", idArg("correlation id"))
    .option("--stream <name>", "stream to search for events; repeat for several (default: all)", collectNames, [])
    .option("--json", "print {correlationId, roots} as JSON")
    .action(async (team: string, correlationId: string, opts: { stream: string[]; json?: boolean }, cmd: Command) => {
      await withTeam(ctx, cmd, team, async (t) => {
        const streams = [...new Set(opts.stream)];
        const roots = await t.trace(correlationId, streams.length > 0 ? { streams } : {});
        if (roots.length === 0) {
          const where = streams.length > 0 ? `in stream ${streams.join(", ")}` : "in any stream";
          throw new CliFailure(
            `nothing found for correlationId ${printable(correlationId)}: no events ${where}, no recent calls or messages`,
          );
        }
        if (opts.json) printJson(ctx.stdout, { correlationId, roots });
        else ctx.stdout.write(`${renderTraceTree(roots).join("\n")}\n`);
      });
    });

  return program;
}

/** Connects with the global options, runs `fn`, and always closes the connection. */
async function withTeam<T>(ctx: CliIO, cmd: Command, team: string, fn: (team: Team) => Promise<T>): Promise<T> {
  const g = cmd.optsWithGlobals<Globals>();
  const token = g.token ?? (ctx.env.CROSSTALK_TOKEN || undefined);
  const connection = await connect({
    host: g.host,
    team,
    agent: g.agent ?? `cli-${randomBytes(4).toString("hex")}`,
    role: g.role,
    connectTimeoutMs: g.connectTimeout,
    ...(token !== undefined ? { query: () => ({ token }) } : {}),
  });
  try {
    return await fn(connection);
  } finally {
    await connection.close();
  }
}

type TailOptions = {
  stream: string;
  type: string;
  from: "start" | "end" | number | Date;
  limit?: number;
  json?: boolean;
};

/** Follows the stream until SIGINT/SIGTERM, `ctx.signal`, `--limit` events, or a fatal close. */
async function tail(team: Team, opts: TailOptions, ctx: CliIO): Promise<void> {
  const color = useColor(ctx.stdout, ctx.env);
  let seen = 0;
  let stop: () => void = () => {};
  let fail: (error: unknown) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    stop = resolve;
    fail = reject;
  });
  const sub = team.subscribe(
    opts.type,
    (event) => {
      if (opts.limit !== undefined && seen >= opts.limit) return;
      seen++;
      const line = opts.json ? JSON.stringify(event) : formatEvent(event, { color, maxData: color ? 500 : undefined });
      const flushed = writeLine(ctx.stdout, line);
      if (opts.limit !== undefined && seen >= opts.limit) stop();
      return flushed;
    },
    { stream: opts.stream, from: opts.from },
  );
  const onSignal = () => stop();
  const onStatus = (status: string) => {
    if (status === "offline") ctx.stderr.write("connection lost; reconnecting…\n");
    else if (status === "online") ctx.stderr.write("reconnected\n");
    else if (status === "closed") team.online().catch(fail);
  };
  let started = false;
  // A failure to start rejects `sub.ready` (reported by the caller); later ones arrive here.
  const onError = (error: unknown) => {
    if (started) ctx.stderr.write(`${describeError(error)}\n`);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  ctx.signal?.addEventListener("abort", onSignal);
  if (ctx.signal?.aborted) stop();
  team.on("status", onStatus);
  team.on("error", onError);
  try {
    await Promise.race([sub.ready, done]);
    started = true;
    await done;
  } finally {
    sub.unsubscribe();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    ctx.signal?.removeEventListener("abort", onSignal);
    team.off("status", onStatus);
    team.off("error", onError);
  }
}

type ReplayOptions = { stream: string; from: number; to?: number; into: string; progress?: boolean };

async function replay(team: Team, opts: ReplayOptions, ctx: CliIO): Promise<void> {
  const { head } = await team.consumers(opts.stream);
  const last = Math.min(opts.to ?? head, head);
  const total = Math.max(0, last - opts.from + 1);
  const file = createWriteStream(opts.into, { flags: "w" });
  await once(file, "open");
  const showProgress = opts.progress ?? Boolean(ctx.stderr.isTTY);
  let shownAt = 0;
  const show = (done: number, force = false) => {
    if (!showProgress || (!force && Date.now() - shownAt < 100)) return;
    shownAt = Date.now();
    ctx.stderr.write(`\r${renderProgress(done, total)}`);
  };
  let written = 0;
  let first: number | undefined;
  let lastSeq: number | undefined;
  try {
    show(0, true);
    if (total > 0) {
      for await (const event of team.history({ stream: opts.stream, from: opts.from, to: last })) {
        if (!file.write(`${JSON.stringify(event)}\n`)) await once(file, "drain");
        written++;
        first ??= event.seq;
        lastSeq = event.seq;
        show(event.seq - opts.from + 1);
      }
    }
    file.end();
    await finished(file);
  } catch (error) {
    file.destroy();
    throw error;
  } finally {
    if (showProgress) {
      show(written, true);
      ctx.stderr.write("\n");
    }
  }
  const range = first !== undefined ? ` (seq ${first}..${lastSeq})` : "";
  ctx.stdout.write(`replayed ${written} events${range} from ${opts.stream} into ${opts.into}\n`);
}

// ---------------------------------------------------------------------------------------
// Argument parsers (usage errors, exit 2)

const nameArg =
  (what: string) =>
  (value: string): string => {
    if (!nameSchema.safeParse(value).success)
      throw new InvalidArgumentError(`invalid ${what} name: use [A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}`);
    return value;
  };

const collectNames = (value: string, previous: string[]): string[] => [...previous, nameArg("stream")(value)];

const idArg =
  (what: string) =>
  (value: string): string => {
    if (value.length === 0 || value.length > 128) throw new InvalidArgumentError(`a ${what} has 1 to 128 characters`);
    return value;
  };

function patternArg(value: string): string {
  if (!patternSchema.safeParse(value).success)
    throw new InvalidArgumentError("not a NATS-style pattern (e.g. deal.*, deal.>, >)");
  return value;
}

function eventTypeArg(value: string): string {
  if (!eventTypeSchema.safeParse(value).success)
    throw new InvalidArgumentError("an event type is dotted tokens like deal.closed");
  return value;
}

function methodArg(value: string): string {
  if (!methodSchema.safeParse(value).success) throw new InvalidArgumentError("not a valid method name");
  return value;
}

/** Parses a JSON command-line argument. */
export function jsonArg(value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new InvalidArgumentError(`not valid JSON (${(error as Error).message})`);
  }
}

/** An integer option parser with a lower bound. */
export const intArg =
  (min: number) =>
  (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`expected an integer >= ${min}`);
    return n;
  };

/** `--from`: `start`, `end`, a seq (>= 1) or an ISO 8601 time. */
export function parseFrom(value: string): "start" | "end" | number | Date {
  if (value === "start" || value === "end") return value;
  if (/^\d+$/.test(value)) return intArg(1)(value);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw new InvalidArgumentError("expected start, end, a seq (>= 1) or an ISO time like 2025-01-31T12:00:00Z");
}

const toTarget = (target: string, asRole: boolean | undefined): Target => (asRole ? { role: target } : target);

// ---------------------------------------------------------------------------------------
// Output helpers (pure)

type Paint = Record<"dim" | "bold" | "cyan" | "green" | "yellow", (s: string) => string>;
const sgr = (open: number) => (s: string) => `\u001b[${open}m${s}\u001b[0m`;
const COLORS: Paint = { dim: sgr(2), bold: sgr(1), cyan: sgr(36), green: sgr(32), yellow: sgr(33) };
const PLAIN: Paint = { dim: (s) => s, bold: (s) => s, cyan: (s) => s, green: (s) => s, yellow: (s) => s };

/** Colors only on a terminal, and never with NO_COLOR set or TERM=dumb. */
export function useColor(stream: { isTTY?: boolean }, env: Record<string, string | undefined>): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR && env.TERM !== "dumb";
}

/** Escapes control characters so that text from the room cannot drive the terminal. */
export function printable(text: string): string {
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0) as number;
    out += c < 0x20 || (c >= 0x7f && c < 0xa0) ? `\\u${c.toString(16).padStart(4, "0")}` : ch;
  }
  return out;
}

/** One line per event: seq, room time (UTC), type, source, compact JSON data. */
export function formatEvent(event: StoredEvent, opts: { color?: boolean; maxData?: number } = {}): string {
  const p = opts.color ? COLORS : PLAIN;
  let data = JSON.stringify(event.data) ?? "null";
  if (opts.maxData !== undefined && data.length > opts.maxData) data = `${data.slice(0, opts.maxData - 1)}…`;
  return [
    p.dim(String(event.seq).padStart(6)),
    p.dim(new Date(event.ts).toISOString()),
    p.cyan(event.type),
    p.green(printable(event.source)),
    data,
  ].join("  ");
}

/** A plain text table: columns padded to their widest cell, two spaces apart. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  return [headers, ...rows]
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatAgents(agents: AgentInfo[]): string {
  return formatTable(
    ["AGENT", "ROLE", "CONNECTED", "METHODS", "STATUS"],
    agents.map((a) => [
      a.agent,
      a.role,
      new Date(a.connectedAt).toISOString(),
      a.methods.join(","),
      Object.keys(a.status).length > 0 ? JSON.stringify(a.status) : "",
    ]),
  );
}

/** `[█████░░░░░]  50% 5/10` */
export function renderProgress(done: number, total: number, width = 30): string {
  const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(ratio * width);
  return `[${"█".repeat(filled)}${"░".repeat(width - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}% ${done}/${total}`;
}

// ---------------------------------------------------------------------------------------
// Trace trees (pure)

/** A detail value from the wire as text (lists comma-separated), escaped for the terminal. */
function detailText(value: Json | undefined): string {
  if (value === undefined || value === null) return "?";
  if (typeof value === "string") return printable(value);
  if (Array.isArray(value)) return value.length > 0 ? value.map(detailText).join(", ") : "(nobody)";
  if (typeof value === "object") return printable(JSON.stringify(value));
  return printable(String(value));
}

/** One line of a trace: an event, a call or a message. */
function traceLabel(node: TraceNode, showStream: boolean): string {
  const d = node.detail;
  if (node.kind === "event")
    return `${showStream ? detailText(d.stream) : ""}#${detailText(d.seq)} ${detailText(d.type)} (${detailText(d.source)})`;
  if (node.kind === "call")
    return `call ${detailText(d.method)} ${detailText(d.from)} → ${detailText(d.to)} ${detailText(d.outcome)} ${detailText(d.ms)}ms`;
  return `message ${detailText(d.method)} ${detailText(d.from)} → ${detailText(d.to)}`;
}

/** Every node of a forest, depth first, without recursion. */
function* walkTrace(roots: readonly TraceNode[]): Generator<TraceNode> {
  const stack = [...roots];
  for (let node = stack.pop(); node; node = stack.pop()) {
    yield node;
    for (const child of node.children) stack.push(child);
  }
}

/**
 * Renders a trace forest as indented lines, `├─`/`└─` for children:
 * `#3 deal.created (sales-1)` (`main#3 …` when the tree spans several streams),
 * `call review sales-1 → legal-1 ok 12ms`, `message notify legal-1 → mailer-1`.
 */
export function renderTraceTree(roots: readonly TraceNode[], opts: { showStream?: boolean } = {}): string[] {
  let showStream = opts.showStream;
  if (showStream === undefined) {
    const streams = new Set<Json>();
    for (const node of walkTrace(roots)) if (node.kind === "event") streams.add(node.detail.stream ?? null);
    showStream = streams.size > 1;
  }
  const lines: string[] = [];
  // Iterative depth-first walk: [node, prefix for its line, prefix for its children].
  const stack: [TraceNode, string, string][] = [];
  for (const root of [...roots].reverse()) stack.push([root, "", ""]);
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [node, linePrefix, childPrefix] = item;
    lines.push(linePrefix + traceLabel(node, showStream));
    node.children.forEach((_, i, children) => {
      const child = children[children.length - 1 - i] as TraceNode;
      const lastChild = i === 0;
      stack.push([child, childPrefix + (lastChild ? "└─ " : "├─ "), childPrefix + (lastChild ? "   " : "│  ")]);
    });
  }
  return lines;
}

// ---------------------------------------------------------------------------------------
// Writing

function printJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Writes a line; the promise (when any) resolves once the stream wants more. */
function writeLine(out: Output, line: string): Promise<void> | undefined {
  if (out.write(`${line}\n`)) return undefined;
  return new Promise((resolve) => out.once("drain", () => resolve()));
}
