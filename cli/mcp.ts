/**
 * `crosstalk mcp`: an MCP server that is one agent of a team, so an LLM in any MCP host
 * (desktop assistants, IDEs, agent frameworks) joins the team with the token's id, role and
 * permissions. Over stdio by default (the host spawns the command); with `--http`, over
 * Streamable HTTP at `http://<listen>:<port>/mcp`, each MCP session sharing the one team
 * connection. What it offers: `mcp-seat.ts`.
 *
 * In stdio mode stdout carries MCP's JSON-RPC and nothing else; everything said to a person
 * goes to stderr.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { type Command, Option } from "commander";
import { connect, type Team } from "../client/node.ts";
import { collectNames, intArg, nameArg, portArg } from "./args.ts";
import { credentials } from "./auth.ts";
import { describeError } from "./errors.ts";
import type { CliIO } from "./io.ts";
import { McpSeat } from "./mcp-seat.ts";
import type { Globals } from "./team.ts";

type McpOptions = {
  team: string;
  http?: boolean;
  port: number;
  listen: string;
  ns: string[];
  stream: string[];
  callTimeout: number;
  host?: string;
  token?: string;
  agent?: string;
  role?: string;
};

/** Adds `mcp` to `program`. */
export function addMcpCommand(program: Command, ctx: CliIO): void {
  program
    .command("mcp")
    .description(
      "Serve the team to an MCP host as one agent: tools for its methods, streams and state; resources with subscriptions. stdio by default, Streamable HTTP with --http.",
    )
    .requiredOption("--team <team>", "the team to join", nameArg("team"))
    .option("--http", "serve Streamable HTTP at http://<listen>:<port>/mcp instead of stdio")
    .option("--port <port>", "with --http: the port (0 picks a free one)", portOrZero, 3333)
    .option(
      "--listen <address>",
      "with --http: the address to listen on (anyone who reaches it acts as this agent)",
      "127.0.0.1",
    )
    .option("--ns <namespace>", "offer this namespace as a resource from the start; repeatable", collectNamespaces, [])
    .option(
      "--stream <name>",
      "offer this stream as a resource from the start (main always is); repeatable",
      collectNames,
      [],
    )
    .option("--call-timeout <ms>", "default deadline of a method call", intArg(1), 30_000)
    // The connection options also after the command, as an MCP host's config lists them.
    .addOption(new Option("--host <host>", "PartyKit host[:port] (as the global --host)"))
    .addOption(new Option("--token <token>", "agent token (as the global --token)"))
    .addOption(new Option("--agent <id>", "agent id (as the global --agent)").argParser(nameArg("agent")))
    .addOption(new Option("--role <role>", "role (as the global --role)").argParser(nameArg("role")))
    .action(async (opts: McpOptions, cmd: Command) => {
      const g = cmd.parent?.opts<Globals>() ?? ({ host: "127.0.0.1:1999", connectTimeout: 10_000 } as Globals);
      const host = opts.host ?? g.host;
      const who = {
        token: opts.token ?? g.token,
        agent: opts.agent ?? g.agent,
        role: opts.role ?? g.role,
      };
      const auth = await credentials(who, ctx, { host, team: opts.team });
      const team = await connect({ host, team: opts.team, ...auth, connectTimeoutMs: g.connectTimeout });
      const seat = new McpSeat(team, {
        namespaces: opts.ns,
        streams: opts.stream,
        callTimeoutMs: opts.callTimeout,
        version: packageVersion(),
      });
      try {
        await (opts.http ? serveHttp(seat, team, opts, ctx) : serveStdio(seat, team, ctx));
      } finally {
        await seat.close();
        await team.close();
      }
    });
}

const collectNamespaces = (value: string, previous: string[]): string[] => [...previous, nameArg("namespace")(value)];

/** Port 0 means "any free port" here (printed once listening). */
const portOrZero = (value: string): number => (value === "0" ? 0 : portArg(value));

/** Resolves when the session should end: stdin closed, a signal, `ctx.signal`, or the team connection closed for good. */
function stopped(team: Team, ctx: CliIO, extra?: (stop: (error?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup: (() => void)[] = [];
    const stop = (error?: unknown) => {
      for (const c of cleanup) c();
      if (error) reject(error);
      else resolve();
    };
    const onSignal = () => stop();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    cleanup.push(
      () => process.off("SIGINT", onSignal),
      () => process.off("SIGTERM", onSignal),
    );
    if (ctx.signal) {
      if (ctx.signal.aborted) return stop();
      ctx.signal.addEventListener("abort", onSignal);
      cleanup.push(() => ctx.signal?.removeEventListener("abort", onSignal));
    }
    // A refused or taken-over connection does not come back: the server has nothing left to serve.
    const onStatus = (status: string) => {
      if (status === "closed") team.online().then(() => stop(), stop);
    };
    team.on("status", onStatus);
    cleanup.push(() => team.off("status", onStatus));
    extra?.(stop);
  });
}

async function serveStdio(seat: McpSeat, team: Team, ctx: CliIO): Promise<void> {
  const server = seat.session();
  const transport = new StdioServerTransport(process.stdin, ctx.stdout);
  await server.connect(transport);
  ctx.stderr.write(`crosstalk mcp: agent ${team.agent} (role ${team.role}) of team ${team.team}, on stdio\n`);
  await stopped(team, ctx, (stop) => {
    // The host closing our stdin ends the session.
    const onEnd = () => stop();
    process.stdin.once("end", onEnd);
    process.stdin.once("close", onEnd);
    server.onclose = ((previous) => () => {
      previous?.();
      stop();
    })(server.onclose);
  });
}

async function serveHttp(seat: McpSeat, team: Team, opts: McpOptions, ctx: CliIO): Promise<void> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const loopback = /^(127\.|::1$|localhost$)/.test(opts.listen);
  let allowedHosts: string[] = [];

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path !== "/mcp") return reply(res, 404, "not found: the MCP endpoint is /mcp");
    const sessionId = req.headers["mcp-session-id"];
    const existing = typeof sessionId === "string" ? transports.get(sessionId) : undefined;
    if (existing) return existing.handleRequest(req, res);
    if (sessionId !== undefined) return reply(res, 404, "unknown MCP session (it ended): initialize again");
    if (req.method !== "POST") return reply(res, 400, "no MCP session: POST an initialize request first");
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req));
    } catch {
      return reply(res, 400, "the body is not JSON");
    }
    if (!isInitializeRequest(body)) return reply(res, 400, "no MCP session: POST an initialize request first");
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void transports.set(id, transport),
      // A page on another site must not drive a local server through the browser (DNS rebinding).
      ...(loopback ? { enableDnsRebindingProtection: true, allowedHosts } : {}),
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
    };
    await seat.session().connect(transport);
    await transport.handleRequest(req, res, body);
  };

  const http = createServer((req, res) => {
    handle(req, res).catch((error) => {
      ctx.stderr.write(`crosstalk mcp: ${describeError(error)}\n`);
      if (!res.headersSent) reply(res, 500, "internal error");
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(opts.port, opts.listen, () => resolve());
  });
  const { port } = http.address() as AddressInfo;
  allowedHosts = [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `${opts.listen}:${port}`];
  const shown = opts.listen.includes(":") ? `[${opts.listen}]` : opts.listen;
  ctx.stderr.write(
    `crosstalk mcp: agent ${team.agent} (role ${team.role}) of team ${team.team}, on http://${shown}:${port}/mcp\n`,
  );
  try {
    await stopped(team, ctx);
  } finally {
    await Promise.all([...transports.values()].map((t) => t.close().catch(() => {})));
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  }
}

function reply(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

async function readBody(req: IncomingMessage, max = 4 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new Error("request body too large");
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** This package's version (from its package.json, found from here in the sources or in dist/). */
function packageVersion(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "crosstalk" && pkg.version) return pkg.version;
    } catch {}
    if (dirname(dir) === dir) return "0.0.0";
  }
}
