#!/usr/bin/env node
/**
 * `npm start`: runs the room and the demo page with `partykit dev` (the repo's partykit.json),
 * waits until both answer, prints the demo URL and how to mint tokens, and keeps running until
 * the server exits. PORT picks the port (default 1999); state persists in .data/.
 *
 * Development mode: a random HS256 key, generated once and kept in .data/dev-secret (tokens
 * survive restarts), and CROSSTALK_DEV=1, which opens the room's token endpoint the demo
 * page uses. Never run a room reachable by others like this.
 *
 * Once the room answers it starts the demo team of `acme` (demo/team/node.ts: the Node agents,
 * and a wake-up for the legal agent in its worker), restarted if it ever exits.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const PARTYKIT = join(ROOT, "node_modules/partykit/dist/bin.mjs");
const port = Number(process.env.PORT || 1999);
const origin = `http://127.0.0.1:${port}`;
const READY_TIMEOUT_MS = 120_000;

/** The development key, made on the first start and kept with the room's state. */
function devSecret() {
  const file = join(ROOT, ".data", "dev-secret");
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${randomBytes(32).toString("base64url")}\n`, { mode: 0o600 });
  }
  return readFileSync(file, "utf8").trim();
}

const vars = { CROSSTALK_HS256_SECRET: devSecret(), CROSSTALK_DEV: "1" };
const args = [PARTYKIT, "dev", "--port", String(port), "--persist", ".data", "--disable-request-cf-fetch"];
args.push("--no-hotkeys", ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}=${v}`]));

// Its own process group, so a signal reaches partykit and the workerd it starts.
// PARTYKIT_LOG=debug, or partykit drops room log lines written together with workerd's stack notes.
const env = { PARTYKIT_LOG: "debug", ...process.env };
const child = spawn(process.execPath, args, {
  cwd: ROOT,
  env,
  stdio: ["ignore", "inherit", "inherit"],
  detached: true,
});

const signalChild = (signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
};
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"])
  process.on(signal, () => {
    stopping = true;
    signalChild(signal);
  });

let exited = false;
child.on("exit", (code, signal) => {
  exited = true;
  // Take down anything left in the group (workerd) before leaving.
  signalChild("SIGTERM");
  process.exit(code ?? 128 + (constants.signals[signal] ?? 0));
});
child.on("error", (error) => {
  console.error(`could not start partykit: ${error.message}`);
  process.exit(1);
});

/** True once the room (401: it wants a token) and the demo page both answer. */
async function answers() {
  try {
    const [room, page] = await Promise.all([fetch(`${origin}/parties/main/_start`), fetch(`${origin}/`)]);
    return (room.ok || room.status === 401) && page.ok;
  } catch {
    return false;
  }
}

const deadline = Date.now() + READY_TIMEOUT_MS;
while (!exited && !(await answers())) {
  if (Date.now() > deadline) {
    console.error(`partykit dev did not answer on ${origin} within ${READY_TIMEOUT_MS / 1000} s`);
    signalChild("SIGTERM");
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 200));
}
/** The demo team's Node agents, in a process of their own (tsx runs the TypeScript). */
let team = null;
function startTeam() {
  if (exited) return;
  team = spawn(
    process.execPath,
    ["--import", "tsx", "demo/team/node.ts", "--host", `127.0.0.1:${port}`, "--team", "acme"],
    {
      cwd: ROOT,
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  team.on("exit", (code) => {
    if (exited || stopping) return;
    console.error(`the demo team exited (${code}); restarting it in 2 s`);
    setTimeout(startTeam, 2000);
  });
}
process.on("exit", () => team?.kill("SIGTERM"));

if (!exited) {
  startTeam();
  console.log(`
crosstalk is running: ${origin}/?team=acme

Development mode: agents need tokens signed with the key in .data/dev-secret. Mint one:
  CROSSTALK_HS256_SECRET=$(cat .data/dev-secret) node bin/crosstalk.js token --team acme --agent sales-1 --role sales
or ask the room: curl '${origin}/parties/main/acme/dev/token?agent=sales-1&role=sales'

The demo team of acme runs too: sales, contract, billing-1/-2, compliance, analytics (Node) and legal (a worker).
`);
}
