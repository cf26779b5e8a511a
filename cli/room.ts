/**
 * Running the team room in the user's own project: `crosstalk dev` and `crosstalk deploy`.
 *
 * The room ships as TypeScript (`party/server.ts` and what it imports) inside this package;
 * partykit bundles it with esbuild like any party. Each command writes a partykit.json into a
 * fresh temporary folder whose `main` is the absolute path of that file, wherever the package
 * was installed (hoisted, nested, pnpm's store), then runs the partykit CLI on it. The user's
 * project needs no partykit.json and no copy of the room.
 *
 * partykit is an optional peer dependency: a browser or worker that only runs agents never
 * downloads it (workerd alone is ~100 MB), and a project that runs the room installs the one
 * version the package declares. It is looked up from the user's project first, then from
 * this package, as node would resolve `partykit` from each; when absent the commands fail
 * with `PARTYKIT_MISSING` and the install command.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { generateSecret } from "../client/node.ts";
import { collectVars, portArg, projectNameArg } from "./args.ts";
import { RoomError } from "./errors.ts";
import type { CliIO } from "./io.ts";

/** Where `crosstalk dev` listens unless told otherwise, and where the other commands look. */
export const DEFAULT_PORT = 1999;

/** What the room is tested with; the repository's own partykit.json says the same. */
const COMPATIBILITY_DATE = "2024-07-01";

/** A first `partykit dev` bundles the room and starts workerd: slow on a loaded machine. */
const READY_TIMEOUT_MS = 120_000;

/** Adds `dev` and `deploy` to `program`. */
export function addRoomCommands(program: Command, ctx: CliIO): void {
  program
    .command("dev")
    .description(
      "Run the team room on this machine (partykit dev, workerd) until interrupted. Without a key (--var CROSSTALK_JWKS=… or CROSSTALK_HS256_SECRET=…) it runs in development mode with a key of its own.",
    )
    .option("--port <port>", "port to listen on", portArg, DEFAULT_PORT)
    .option("--persist <dir>", "folder that keeps the room's state across restarts", ".crosstalk")
    .option("--var <KEY=VALUE>", "a variable for the room, e.g. CROSSTALK_LOG_WINDOW=50000; repeatable", collectVars)
    .action(async (opts: DevOptions) => {
      await dev(opts, ctx);
    });

  program
    .command("deploy")
    .description("Deploy the team room to PartyKit's platform (Cloudflare): partykit deploy.")
    .option("--name <project>", "PartyKit project name (default: package.json name)", projectNameArg)
    .option("--var <KEY=VALUE>", "a variable for the room, e.g. CROSSTALK_LOG_WINDOW=50000; repeatable", collectVars)
    .action(async (opts: DeployOptions) => {
      await deploy(opts, ctx);
    });
}

type DevOptions = { port: number; persist: string; var?: Record<string, string> };
type DeployOptions = { name?: string; var?: Record<string, string> };

/**
 * `partykit dev` on the packaged room until SIGINT/SIGTERM/SIGHUP or `ctx.signal`. Prints
 * one line once the room answers; partykit's own output passes through.
 */
async function dev(opts: DevOptions, ctx: CliIO): Promise<void> {
  const root = packageRoot();
  const partykit = findPartykit([ctx.cwd, root]);
  await assertPortFree(opts.port);
  const persist = resolve(ctx.cwd, opts.persist);
  const config = writeRoomConfig(root, "crosstalk");
  const devKey = opts.var?.CROSSTALK_JWKS || opts.var?.CROSSTALK_HS256_SECRET ? null : devSecret(persist);
  const vars = devKey ? { ...opts.var, CROSSTALK_HS256_SECRET: devKey.secret, CROSSTALK_DEV: "1" } : opts.var;
  // --disable-request-cf-fetch: partykit otherwise asks Cloudflare for request.cf on start,
  // which hangs without internet. --no-hotkeys: there is no keyboard on stdin here.
  const args = ["dev", "-c", config.file, "--port", String(opts.port), "--persist", persist];
  args.push("--disable-request-cf-fetch", "--no-hotkeys", ...varArgs(vars));
  // Its own process group, so one signal reaches partykit and the workerd it starts.
  const child = spawnPartykit(ctx, partykit, args, { root, detached: true });
  const group = (signal: NodeJS.Signals) => {
    try {
      process.kill(-(child.pid as number), signal);
    } catch {
      // Already gone.
    }
  };
  let stopping = false;
  const stop = (signal: NodeJS.Signals = "SIGTERM") => {
    stopping = true;
    group(signal);
  };
  // Leaving by any way but SIGKILL takes the room along.
  const onExit = () => group("SIGKILL");
  const onAbort = () => stop();
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const signal of signals) process.on(signal, stop);
  process.on("exit", onExit);
  ctx.signal?.addEventListener("abort", onAbort);
  if (ctx.signal?.aborted) stop();
  const exited = exitOf(child, "exit");
  let done = false;
  const settle = () => {
    done = true;
  };
  exited.then(settle, settle);
  try {
    const origin = `http://127.0.0.1:${opts.port}`;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!done && !stopping && !(await answers(`${origin}/parties/main/_crosstalk`))) {
      if (Date.now() > deadline) {
        stop();
        await exited;
        throw new RoomError(
          "ROOM_NOT_READY",
          `the room did not answer on ${origin} within ${READY_TIMEOUT_MS / 1000} s`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!done && !stopping) {
      ctx.stdout.write(
        `\ncrosstalk room is running: host 127.0.0.1:${opts.port}, state in ${persist} (Ctrl-C stops it)\n\n`,
      );
      if (devKey)
        ctx.stdout.write(
          `Development mode (no key given): tokens are signed with the key in ${devKey.file}; the room\n` +
            `mints them at GET /parties/main/<team>/dev/token?agent=&role= (the CLI asks there by itself), or:\n` +
            `  CROSSTALK_HS256_SECRET=$(cat ${devKey.file}) npx crosstalk token --team <team> --agent <id> --role <role>\n\n`,
        );
    }
    const { code, signal } = await exited;
    if (!stopping && code !== 0) {
      throw new RoomError("PARTYKIT_FAILED", `partykit dev exited with ${code ?? signal} (its output is above)`);
    }
  } finally {
    group("SIGTERM"); // Whatever is left of the group (workerd).
    for (const signal of signals) process.off(signal, stop);
    process.off("exit", onExit);
    ctx.signal?.removeEventListener("abort", onAbort);
    config.remove();
  }
}

/** `partykit deploy` of the packaged room under the project's name. */
async function deploy(opts: DeployOptions, ctx: CliIO): Promise<void> {
  const root = packageRoot();
  const partykit = findPartykit([ctx.cwd, root]);
  const name = opts.name ?? projectNameOf(ctx.cwd);
  if (name === undefined) {
    throw new RoomError(
      "NO_PROJECT_NAME",
      "no PartyKit project name: pass --name <project> (package.json has no name made of letters, digits and dashes)",
    );
  }
  const config = writeRoomConfig(root, name);
  try {
    // Not detached: partykit may ask to log in, which needs the terminal.
    const args = ["deploy", "-c", config.file, "--name", name, ...varArgs(opts.var)];
    const child = spawnPartykit(ctx, partykit, args, { root, detached: false });
    const { code, signal } = await exitOf(child, "close");
    if (code !== 0) throw new RoomError("PARTYKIT_FAILED", `partykit deploy exited with ${code ?? signal}`);
  } finally {
    config.remove();
  }
}

// ---------------------------------------------------------------------------------------
// Finding things

/** The installed partykit CLI: the script its package.json names as `bin`. */
export type Partykit = { bin: string; version: string };

/**
 * Finds partykit as node would resolve the package `partykit` from each folder in `from`;
 * the first hit wins. Throws `PARTYKIT_MISSING` with the install command otherwise.
 */
export function findPartykit(from: readonly string[]): Partykit {
  for (const dir of from) {
    // partykit's exports map hides package.json from require.resolve: walk the same
    // node_modules folders resolution would.
    const candidates = createRequire(join(dir, "package.json")).resolve.paths("partykit") ?? [];
    for (const modules of candidates) {
      const pkgDir = join(modules, "partykit");
      const manifest = readJson(join(pkgDir, "package.json"));
      if (manifest === undefined) continue;
      const bin = typeof manifest.bin === "string" ? manifest.bin : (manifest.bin as { partykit?: unknown })?.partykit;
      if (typeof bin !== "string") continue;
      return { bin: join(pkgDir, bin), version: String(manifest.version) };
    }
  }
  throw new RoomError(
    "PARTYKIT_MISSING",
    `partykit is not installed; the room runs on it. Install it in your project: npm install --save-dev partykit@${partykitRange()}`,
  );
}

/** The partykit versions this package declares (its peer dependency range). */
export function partykitRange(root = packageRoot()): string {
  const manifest = readJson(join(root, "package.json"));
  const range = (manifest?.peerDependencies as Record<string, unknown> | undefined)?.partykit;
  return typeof range === "string" ? range : "latest";
}

/**
 * The folder this package is installed in: the nearest one above this module holding the
 * room. The same answer from `cli/room.ts` (tests) and `dist/cli/room.js` (the bin).
 */
export function packageRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "party/server.ts")) && existsSync(join(dir, "package.json"))) return dir;
    if (dirname(dir) === dir) throw new Error(`crosstalk's room (party/server.ts) is not installed above ${from}`);
  }
}

/** The PartyKit project name `deploy` defaults to: package.json's name without its scope. */
export function projectNameOf(cwd: string): string | undefined {
  const name = readJson(join(cwd, "package.json"))?.name;
  if (typeof name !== "string") return undefined;
  const bare = name.replace(/^@[^/]+\//, "");
  return /^[a-zA-Z0-9-]{1,63}$/.test(bare) ? bare : undefined;
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(file, "utf8"));
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------
// Running partykit

/**
 * Writes the partykit.json for the packaged room into a fresh temporary folder. `main` is
 * absolute, so partykit finds the room wherever the package lives.
 */
export function writeRoomConfig(root: string, name: string): { file: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "crosstalk-partykit-"));
  const file = join(dir, "partykit.json");
  const config = {
    $schema: "https://www.partykit.io/schema.json",
    name,
    main: join(root, "party/server.ts"),
    compatibilityDate: COMPATIBILITY_DATE,
  };
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * `dev` without a key of the user's: a development HS256 key, made once and kept in the
 * state folder (tokens survive restarts), with dev mode's token endpoint switched on.
 */
function devSecret(persist: string): { secret: string; file: string } {
  const file = join(persist, "dev-secret");
  if (!existsSync(file)) {
    mkdirSync(persist, { recursive: true });
    writeFileSync(file, `${generateSecret()}\n`, { mode: 0o600 });
  }
  return { secret: readFileSync(file, "utf8").trim(), file };
}

const varArgs = (vars: Record<string, string> = {}): string[] =>
  Object.entries(vars).flatMap(([key, value]) => ["--var", `${key}=${value}`]);

/**
 * Starts the partykit CLI with this node, in the package's folder: partykit names the entry
 * module by its path relative to its working directory, and workerd refuses a module path
 * that starts with `../` ("can't use '..' to break out of starting directory") — which it
 * would from the user's project, the room living under node_modules. Paths handed to
 * partykit are therefore absolute. A real terminal gets partykit's output directly (colors,
 * its live UI); anything else (tests) gets it piped through `ctx`.
 */
function spawnPartykit(
  ctx: CliIO,
  partykit: Partykit,
  args: string[],
  opts: { root: string; detached: boolean },
): ChildProcess {
  const direct = ctx.stdout === process.stdout && ctx.stderr === process.stderr;
  const child = spawn(process.execPath, [partykit.bin, ...args], {
    cwd: opts.root,
    // PWD follows cwd, or workerd warns that they differ. PARTYKIT_LOG=debug unless set: at
    // its default level partykit drops room log lines written together with workerd's stack notes.
    env: { PARTYKIT_LOG: "debug", ...ctx.env, PWD: opts.root },
    detached: opts.detached,
    // A detached group cannot read the terminal: only deploy (not detached) gets stdin.
    stdio: [opts.detached ? "ignore" : "inherit", direct ? "inherit" : "pipe", direct ? "inherit" : "pipe"],
  });
  child.stdout?.pipe(ctx.stdout, { end: false });
  child.stderr?.pipe(ctx.stderr, { end: false });
  return child;
}

/**
 * How the child ended; a failure to start rejects. `close` also waits for its output to
 * drain, but a grandchild (workerd) holding the pipes would delay it: `dev` waits for `exit`.
 */
async function exitOf(
  child: ChildProcess,
  event: "exit" | "close",
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  await once(child, event);
  return { code: child.exitCode, signal: child.signalCode };
}

async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    await res.body?.cancel();
    // 401: the room answers, refusing a request without a token.
    return res.ok || res.status === 401;
  } catch {
    return false;
  }
}

/** Refuses a port someone listens on: the readiness check would find them, not the room. */
async function assertPortFree(port: number): Promise<void> {
  const server = createServer();
  try {
    await new Promise<void>((res, rej) => {
      server.once("error", rej);
      server.listen(port, "127.0.0.1", () => res());
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE" || code === "EACCES")
      throw new RoomError("PORT_IN_USE", `cannot listen on 127.0.0.1:${port} (${code}): pick another with --port`);
    throw error;
  } finally {
    await new Promise((r) => server.close(r));
  }
}
