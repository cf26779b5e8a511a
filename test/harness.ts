/**
 * Starts a real `partykit dev` (workerd) on a free port with a fresh persist directory, waits
 * until it answers, and hands out connected agents. Every integration test uses it; nothing
 * that crosses the wire is mocked.
 *
 *   await using room = await startRoom();
 *   const a = await room.agent("sales-1");
 *
 * The room gets a random HS256 key (`CROSSTALK_HS256_SECRET`) unless told otherwise;
 * `room.agent()` mints each agent's token, `room.token()` mints one for raw sockets, and
 * `room.fetch()` sends one as a bearer token.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import WebSocket from "ws";
import { type ConnectOptions, connect, generateSecret, mintToken, type Team } from "../client/node.ts";

const ROOT = resolve(import.meta.dirname, "..");
const PARTYKIT = join(ROOT, "node_modules/partykit/dist/bin.mjs");
/** The test project: the real room plus a workerd agent party (test/fixtures). */
export const TEST_CONFIG = join(ROOT, "test/fixtures/partykit.json");

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

export type RoomServer = {
  readonly port: number;
  /** `127.0.0.1:<port>`, what `connect({ host })` takes. */
  readonly host: string;
  readonly persistDir: string;
  /** A fresh team name, unique per call. */
  team(prefix?: string): string;
  /** Connects a Node agent (closed when the server is disposed), with a token minted on every (re)connect. */
  agent(agent: string, options?: Partial<ConnectOptions>): Promise<Team>;
  /** A token for `agent` in `role` (default `agent`) of `team` (default `acme`), signed with the room's key. */
  token(
    agent: string,
    role?: string,
    options?: { team?: string; ttl?: number | string; perms?: string[] },
  ): Promise<string>;
  /**
   * `fetch` against the server, path relative to the origin, as the team's operator: with a
   * bearer token of role `admin` for the path's team unless `init` sets `Authorization` (or
   * the room has no HS256 key). Under the default policy only `admin` reads `/metrics`.
   */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Kills the server process group (SIGKILL by default: no chance to flush anything). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and persist directory. */
  restart(): Promise<void>;
  /** Closes agents, kills the server, removes the persist directory. */
  [Symbol.asyncDispose](): Promise<void>;
  /** The server's recent output, for failure messages. */
  output(): string;
};

let teamCounter = 0;

export async function startRoom(
  options: {
    config?: string;
    vars?: Record<string, string>;
    /** The room's HS256 key (`CROSSTALK_HS256_SECRET`); random by default, null for none. */
    secret?: string | null;
  } = {},
): Promise<RoomServer> {
  const secret = options.secret === undefined ? generateSecret() : options.secret;
  const vars = { ...(secret ? { CROSSTALK_HS256_SECRET: secret } : {}), ...options.vars };
  let port = await freePort();
  const persistDir = mkdtempSync(join(tmpdir(), "crosstalk-room-"));
  const config = options.config ?? TEST_CONFIG;
  const agents = new Set<Team>();
  let child: ChildProcess | null = null;
  let log = "";

  /** One attempt: spawn and wait until the room answers; on failure the process group is killed. */
  const launchOnce = async (timeoutMs: number) => {
    const args = [
      PARTYKIT,
      "dev",
      "-c",
      config,
      "--port",
      String(port),
      "--persist",
      persistDir,
      "--disable-request-cf-fetch",
      "--no-hotkeys",
    ];
    for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}=${v}`);
    const proc = spawn(process.execPath, args, { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (d: Buffer) => {
      log = (log + d.toString()).slice(-20_000);
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    child = proc;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        // 401: the room answers, refusing a request without a token.
        const res = await fetch(`http://127.0.0.1:${port}/parties/main/_harness`);
        if (res.ok || res.status === 401) return;
      } catch {
        // Not listening yet.
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await kill();
    throw new Error(`partykit dev did not answer within ${timeoutMs / 1000} s (exit ${proc.exitCode}):\n${log}`);
  };

  /**
   * Starts the server, trying again when it never answers (seen on a loaded machine: workerd
   * builds, then does not listen). A first start may take a fresh port; a restart keeps its port.
   */
  const launch = async (samePort: boolean) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await launchOnce(40_000);
      } catch (error) {
        if (attempt >= 3) throw error;
        if (!samePort) port = await freePort();
      }
    }
  };

  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    try {
      process.kill(-(proc.pid as number), signal);
    } catch {
      // Already gone.
    }
    await exited;
    child = null;
  };

  await launch(false);
  const server: RoomServer = {
    port,
    host: `127.0.0.1:${port}`,
    persistDir,
    team: (prefix = "team") => `${prefix}-${process.pid}-${++teamCounter}`,
    async agent(agent, opts = {}) {
      const team = opts.team ?? "acme";
      const role = opts.role ?? "agent";
      const connection = await connect({
        host: server.host,
        team,
        agent,
        role,
        ...(secret ? { token: () => server.token(agent, role, { team }) } : {}),
        ...opts,
      });
      agents.add(connection);
      return connection;
    },
    token(agent, role = "agent", opts = {}) {
      if (!secret) throw new Error("this room has no HS256 key: mint with its own key");
      const { team = "acme", ttl = "1h", perms } = opts;
      return mintToken({ secret, team, agent, role, ttl, ...(perms ? { perms } : {}) });
    },
    async fetch(path, init = {}) {
      const headers = new Headers(init.headers);
      // parts: ["parties", <party>, <team>, ...]
      const team = path.split("?")[0]?.split("/").filter(Boolean)[2];
      if (secret && team && !headers.has("authorization"))
        headers.set("authorization", `Bearer ${await server.token("operator", "admin", { team })}`);
      return fetch(`http://127.0.0.1:${port}${path}`, { ...init, headers });
    },
    kill,
    restart: () => launch(true),
    output: () => log,
    async [Symbol.asyncDispose]() {
      await Promise.all([...agents].map((a) => a.close()));
      await kill();
      rmSync(persistDir, { recursive: true, force: true });
    },
  };
  return server;
}

/** Polls `check` until it returns without throwing (state settles over the network). */
export async function eventually<T>(
  check: () => T | Promise<T>,
  { timeoutMs = 20_000, intervalMs = 20 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}

/**
 * A `ws` WebSocket class for `connect({ WebSocket })` whose sockets a test can break: `cut()`
 * kills the current socket (partysocket reconnects by itself); `down()` kills it and sends
 * every later connection nowhere — a crashed or partitioned agent — until `up()`;
 * `cutOnSend(match)` loses the next outgoing text frame that `match`es and kills the socket
 * with it (a frame written just before the link died, which the room never got).
 */
export function cuttableSocket() {
  const sockets: WebSocket[] = [];
  let down = false;
  let lose: ((text: string) => boolean) | null = null;
  class Tracked extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(down ? "ws://127.0.0.1:9/" : url, protocols);
      sockets.push(this);
    }
    override send(data: unknown, ...rest: unknown[]): void {
      if (lose && typeof data === "string" && lose(data)) {
        lose = null;
        this.terminate();
        return;
      }
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return {
    WebSocket: Tracked,
    cut: () => sockets.at(-1)?.terminate(),
    down: () => {
      down = true;
      sockets.at(-1)?.terminate();
    },
    up: () => {
      down = false;
    },
    cutOnSend: (match: (text: string) => boolean) => {
      lose = match;
    },
  };
}
