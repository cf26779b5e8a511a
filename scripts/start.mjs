#!/usr/bin/env node
/**
 * `npm start`: runs the room and the demo page with `partykit dev` (the repo's partykit.json),
 * waits until both answer, prints the demo URL and keeps running until the server exits.
 * PORT picks the port (default 1999); state persists in .data/.
 */
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const PARTYKIT = join(ROOT, "node_modules/partykit/dist/bin.mjs");
const port = Number(process.env.PORT || 1999);
const origin = `http://127.0.0.1:${port}`;
const READY_TIMEOUT_MS = 120_000;

// Its own process group, so a signal reaches partykit and the workerd it starts.
const child = spawn(
  process.execPath,
  [PARTYKIT, "dev", "--port", String(port), "--persist", ".data", "--disable-request-cf-fetch", "--no-hotkeys"],
  { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], detached: true },
);

const signalChild = (signal) => {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => signalChild(signal));

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

/** True once the room and the demo page both answer. */
async function answers() {
  try {
    const [room, page] = await Promise.all([fetch(`${origin}/parties/main/_start`), fetch(`${origin}/`)]);
    return room.ok && page.ok;
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
if (!exited) console.log(`\ncrosstalk is running: ${origin}/?team=acme\n`);
