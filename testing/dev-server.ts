/**
 * A real `partykit dev` (workerd) for tests: on a free port, with a fresh persist directory,
 * started from the user's own `partykit` install and polled until it answers. With
 * `host: "wrangler"`, the same room on the maintained stack instead: `wrangler dev --local`
 * over the partyserver adapter (`party/partyserver.ts`), offline, telemetry off. Everything
 * about the real server (SIGKILL restarts, HTTP through PartyKit, workerd agents, stock
 * y-websocket clients) is tested here; nothing that crosses the wire is mocked.
 *
 *   await using room = await startRoom();
 *   const a = await room.agent("sales-1");
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { generateSecret, mintToken } from "../client/node.ts";
import { cuttableSocket } from "./cuttable.ts";
import { TestKitError } from "./errors.ts";
import { agentPool, checkPath, type TestHost, uniqueTeam } from "./host.ts";
import { heapAfterGcMb, partykitInspector } from "./inspector.ts";
import { sleep } from "./wait.ts";

export type StartRoomOptions = {
  /** Which dev server runs the room (default `partykit`); both serve `/parties/main/<team>`. */
  host?: "partykit" | "wrangler";
  /**
   * The partykit config to run. Default: the room crosstalk ships (`testing/partykit.json`:
   * `party/server.ts` and nothing else). A project with parties of its own passes its config.
   * With `host: "wrangler"`, a wrangler config (default `testing/wrangler.jsonc`).
   */
  config?: string;
  /** `--var K=V` for the room, e.g. `{ CROSSTALK_LOG_WINDOW: "1024" }`. */
  vars?: Record<string, string>;
  /** The project: where `partykit` is looked up and where `partykit dev` runs. Default: `process.cwd()`. */
  cwd?: string;
  /** How long one start may take before it is tried again (default 40 s). */
  startTimeoutMs?: number;
  /** How many starts to try (default 3). */
  attempts?: number;
  /**
   * The room's HS256 key (`CROSSTALK_HS256_SECRET`), which `token()` and `agent()` sign with:
   * random by default; null for none (then pass your own keys in `vars`).
   */
  secret?: string | null;
};

export interface RoomServer extends TestHost {
  /** `ws`, which reaches the server like any Node client. */
  readonly WebSocket: typeof WebSocket;
  readonly port: number;
  /** `127.0.0.1:<port>`, what `connect({ host })` takes. */
  readonly host: string;
  readonly persistDir: string;
  /** Kills the server's process group (SIGKILL by default: no chance to flush anything). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Starts the server again on the same port and persist directory; `vars` given here are
   * added to (or replace) the ones it started with, e.g. the test-only
   * `CROSSTALK_TEST_CLOCK_SKEW_MS` that runs the room's clock ahead.
   */
  restart(options?: { vars?: Record<string, string> }): Promise<void>;
  /** The server's recent output, for failure messages. */
  output(): string;
  /**
   * The room's JS heap in MB after a full GC (the worker isolate that holds every room of
   * this server), read through the dev server's inspector; takes a heap snapshot, so it can
   * take seconds on a large heap. Linux only under `partykit dev` (see `testing/inspector.ts`).
   */
  heap(): Promise<number>;
  /**
   * A token for `agent` in `role` (default `agent`) of `team` (default `acme`), signed with
   * the room's key: for raw sockets (`?token=`) and HTTP. `agent()` mints its own.
   */
  token(
    agent: string,
    role?: string,
    options?: { team?: string; ttl?: number | string; perms?: string[] },
  ): Promise<string>;
}

/** A TCP port nothing listens on right now. */
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

const HERE = dirname(fileURLToPath(import.meta.url));

/**
 * The config of the packaged room. Found next to this module in the sources and two levels
 * up from `dist/testing/` once compiled (tsc does not copy JSON; `testing/` ships as source).
 */
export function packagedConfig(file = "partykit.json"): string {
  const candidates = [join(HERE, file), resolve(HERE, `../../testing/${file}`)];
  const found = candidates.find((c) => existsSync(c));
  if (!found)
    throw new TestKitError(
      "INVALID_ARGUMENT",
      `crosstalk's room config is missing (looked at ${candidates.join(", ")})`,
    );
  return found;
}

/**
 * The `partykit` CLI of the project at `cwd`, looked up the way Node resolves a package from
 * there (`partykit/package.json` is not in partykit's exports map, so its folder is found
 * directly), then its `bin`.
 */
export function findPartykit(cwd: string = process.cwd(), cli: "partykit" | "wrangler" = "partykit"): string {
  const dirs = createRequire(join(resolve(cwd), "package.json")).resolve.paths(cli) ?? [];
  for (const dir of dirs) {
    const manifest = join(dir, cli, "package.json");
    if (!existsSync(manifest)) continue;
    const { bin } = JSON.parse(readFileSync(manifest, "utf8")) as { bin?: string | Record<string, string> };
    const path = typeof bin === "string" ? bin : bin?.[cli];
    if (path) return join(dir, cli, path);
  }
  throw new TestKitError(
    "PARTYKIT_NOT_FOUND",
    `${cli} is not installed in ${resolve(cwd)} (nor above it): run \`npm install -D ${cli}${cli === "wrangler" ? " partyserver" : ""}\`, or pass startRoom({ cwd }) for another project`,
  );
}

const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Starts a real `partykit dev` on a free port and waits until it answers. */
export async function startRoom(options: StartRoomOptions = {}): Promise<RoomServer> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const cli = options.host ?? "partykit";
  const bin = findPartykit(cwd, cli);
  const config = resolve(
    cwd,
    options.config ?? packagedConfig(cli === "wrangler" ? "wrangler.jsonc" : "partykit.json"),
  );
  if (!existsSync(config)) throw new TestKitError("INVALID_ARGUMENT", `no ${cli} config at ${config}`);
  const secret = options.secret === undefined ? generateSecret() : options.secret;
  let vars = Object.entries({ ...(secret ? { CROSSTALK_HS256_SECRET: secret } : {}), ...options.vars });
  for (const [k, v] of vars) {
    if (!VAR_NAME.test(k) || typeof v !== "string") {
      throw new TestKitError(
        "INVALID_ARGUMENT",
        `vars: ${JSON.stringify(k)} must be a variable name with a string value`,
      );
    }
  }
  const startTimeoutMs = options.startTimeoutMs ?? 40_000;
  const attempts = options.attempts ?? 3;
  let port = await freePort();
  const persistDir = mkdtempSync(join(tmpdir(), "crosstalk-room-"));
  const host = () => `127.0.0.1:${port}`;
  const token: RoomServer["token"] = async (agent, role = "agent", { team = "acme", ttl = "1h", perms } = {}) => {
    if (!secret) throw new TestKitError("INVALID_ARGUMENT", "token(): this room was started with secret: null");
    return mintToken({ secret, team, agent, role, ttl, ...(perms ? { perms } : {}) });
  };
  const pool = agentPool(() => ({ host: host() }), secret ? token : undefined);
  let child: ChildProcess | null = null;
  let log = "";
  let inspectorPort = 0;
  /** The inspector takes one client at a time: measurements queue. */
  let heapQueue: Promise<unknown> = Promise.resolve();

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

  /** One attempt: spawn and wait until the room answers; on failure the process group is killed. */
  const launchOnce = async () => {
    const args = [bin, "dev", "-c", config, "--port", String(port)];
    if (cli === "wrangler") {
      // Offline: local bindings only, its own inspector port (the default 9229 is shared).
      args.push("--local", "--ip", "127.0.0.1", "--persist-to", persistDir);
      inspectorPort = await freePort();
      args.push("--inspector-port", String(inspectorPort), "--show-interactive-dev-session=false");
      for (const [k, v] of vars) args.push("--var", `${k}:${v}`);
    } else {
      args.push("--persist", persistDir, "--disable-request-cf-fetch", "--no-hotkeys");
      for (const [k, v] of vars) args.push("--var", `${k}=${v}`);
    }
    // PARTYKIT_LOG=debug: at its default level partykit dev drops a whole stderr chunk that holds
    // workerd's "Not symbolizing stack traces" note or a hex stack, with any room log line that
    // shares the chunk (seen in CI: the no-key line lost). `output()` must hold every line.
    const env = { PARTYKIT_LOG: "debug", ...process.env, WRANGLER_SEND_METRICS: "false" };
    const proc = spawn(process.execPath, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (d: Buffer) => {
      log = (log + d.toString()).slice(-200_000);
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    child = proc;
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline && proc.exitCode === null) {
      try {
        // 401: the room answers, refusing a request without a token.
        const res = await fetch(`http://${host()}/parties/main/_harness`);
        if (res.ok || res.status === 401) return;
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    await kill();
    throw new TestKitError(
      "ROOM_DID_NOT_START",
      `${cli} dev did not answer within ${startTimeoutMs / 1000} s (exit ${proc.exitCode}):\n${log}`,
    );
  };

  /**
   * Starts the server, trying again when it never answers (seen on a loaded machine: workerd
   * builds, then does not listen). A first start may take a fresh port; a restart keeps its port.
   */
  const launch = async (samePort: boolean) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await launchOnce();
      } catch (error) {
        if (attempt >= attempts) throw error;
        if (!samePort) port = await freePort();
      }
    }
  };

  try {
    await launch(false);
  } catch (error) {
    rmSync(persistDir, { recursive: true, force: true });
    throw error;
  }
  return {
    get port() {
      return port;
    },
    get host() {
      return host();
    },
    persistDir,
    WebSocket,
    team: uniqueTeam,
    agent: pool.agent,
    token,
    /** As the team's operator: an `admin` bearer token for the path's team, unless `init` sets `Authorization`. */
    async fetch(path, init = {}) {
      const headers = new Headers(init.headers);
      const team = checkPath(path).split("?")[0]?.split("/").filter(Boolean)[2];
      if (secret && team && !headers.has("authorization"))
        headers.set("authorization", `Bearer ${await token("operator", "admin", { team })}`);
      return fetch(`http://${host()}${path}`, { ...init, headers });
    },
    cuttableSocket,
    kill,
    async restart(restartOptions = {}) {
      await kill();
      if (restartOptions.vars) vars = Object.entries({ ...Object.fromEntries(vars), ...restartOptions.vars });
      await launch(true);
    },
    output: () => log,
    heap() {
      const measure = heapQueue.then(async () => {
        const pid = child?.pid;
        if (!pid) throw new TestKitError("INVALID_ARGUMENT", "heap(): the room is not running");
        const address = cli === "wrangler" ? `127.0.0.1:${inspectorPort}` : await partykitInspector(pid);
        return heapAfterGcMb(address);
      });
      heapQueue = measure.catch(() => {});
      return measure;
    },
    async [Symbol.asyncDispose]() {
      await pool.closeAll();
      await kill();
      rmSync(persistDir, { recursive: true, force: true });
    },
  };
}
