/**
 * The commands that talk to a running team room as one more agent: `tail`, `state`,
 * `agents`, `call`, `publish`, `send`, `replay`, `trace`. Each connects with the global
 * options (`--host`, `--token`, `--agent`, `--role`, `--connect-timeout`), does one thing and
 * closes the connection.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { finished } from "node:stream/promises";
import type { Command } from "commander";
import { connect, type Target, type Team } from "../client/node.ts";
import {
  collectNames,
  eventTypeArg,
  idArg,
  intArg,
  jsonArg,
  methodArg,
  nameArg,
  parseFrom,
  patternArg,
} from "./args.ts";
import { CliFailure, describeError } from "./errors.ts";
import {
  formatAgents,
  formatEvent,
  printable,
  printJson,
  renderProgress,
  renderTraceTree,
  useColor,
  writeLine,
} from "./format.ts";
import type { CliIO } from "./io.ts";

/** The global options `main` defines, as commander hands them to a subcommand. */
export type Globals = { host: string; token?: string; agent?: string; role: string; connectTimeout: number };

/** Adds the team commands to `program`. */
export function addTeamCommands(program: Command, ctx: CliIO): void {
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

const toTarget = (target: string, asRole: boolean | undefined): Target => (asRole ? { role: target } : target);
