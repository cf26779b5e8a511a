/**
 * The package as a new user gets it: `npm pack`, installed into a scratch project of its
 * own, the room started the way the README says (`npx crosstalk dev`), and a Node agent in
 * that project (`crosstalk/node`, plain node) publishing and reading back an event and
 * setting and reading a state entity. Installs use `--prefer-offline`: `npm ci` has already
 * put every package in npm's cache, so this needs the registry only for what is missing.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, freePort } from "./harness.ts";

const ROOT = resolve(import.meta.dirname, "..");
const run = promisify(execFile);

/**
 * The environment for npm in the scratch project. Under `npm test`, npm exports its own
 * context (npm_config_local_prefix=<this repository>, npm_package_*): an npm started with it
 * would install into this repository, not the scratch project.
 */
function scratchEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_config_local_prefix|npm_package_|npm_lifecycle_|npm_command$|INIT_CWD$)/.test(key)) continue;
    env[key] = value;
  }
  return env;
}

let dir: string;
let project: string;
let tarball: string;
let room: ChildProcess | undefined;

const npm = (args: string[]) =>
  run("npm", [...args, "--prefer-offline", "--no-audit", "--no-fund"], {
    cwd: project,
    env: scratchEnv(),
    timeout: 60_000,
  });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "crosstalk-install-"));
  project = join(dir, "app");
  // The build already ran (test/build.global.ts): pack what it made, without building again.
  const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
    cwd: ROOT,
    env: scratchEnv(),
  });
  tarball = join(dir, (JSON.parse(stdout) as { filename: string }[])[0]?.filename ?? "");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "scratch-team", private: true, type: "module" }));
});

afterAll(async () => {
  await stopRoom();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** SIGTERM to `npx crosstalk dev` (its whole process group), as Ctrl-C would; SIGKILL if it hangs. */
async function stopRoom(): Promise<void> {
  const child = room;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  process.kill(-(child.pid as number), "SIGTERM");
  const timer = setTimeout(() => process.kill(-(child.pid as number), "SIGKILL"), 20_000);
  await exited;
  clearTimeout(timer);
}

describe("crosstalk installed from its tarball into a new project", () => {
  it("installs without partykit or tsx, and then crosstalk dev says what to install", async () => {
    await npm(["install", tarball]);
    expect(readdirSync(join(project, "node_modules")).sort()).toEqual(
      expect.not.arrayContaining(["partykit", "tsx", "typescript"]),
    );
    expect(existsSync(join(project, "node_modules/crosstalk/dist/cli/main.js"))).toBe(true);
    const refused = await run("npx", ["crosstalk", "dev"], { cwd: project, env: scratchEnv() }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(refused?.code).toBe(1);
    expect(refused?.stderr).toMatch(/^PARTYKIT_MISSING: .*npm install --save-dev partykit@\^0\.0\.115\n$/);
  });

  it("runs the room with npx crosstalk dev; a Node agent publishes, reads back, sets and reads state", async () => {
    await npm(["install", "--save-dev", "partykit@0.0.115"]);
    const port = await freePort();
    const persist = join(dir, "state");
    // Its own process group, so stopRoom reaches npx, the shell and crosstalk alike.
    room = spawn("npx", ["crosstalk", "dev", "--port", String(port), "--persist", persist], {
      cwd: project,
      env: scratchEnv(),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    room.stdout?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    room.stderr?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    await eventually(() => expect(output).toContain(`crosstalk room is running: host 127.0.0.1:${port}`), {
      timeoutMs: 60_000,
      intervalMs: 200,
    }).catch((error) => {
      throw new Error(`${String(error)}\n--- npx crosstalk dev said:\n${output}`);
    });

    writeFileSync(
      join(project, "agent.mjs"),
      `import { connect } from "crosstalk/node";
const host = process.argv[2];
const a = await connect({ host, team: "scratch", agent: "agent-1", role: "test" });
const published = await a.publish("deal.closed", { dealId: "D1" });
const events = [];
for await (const e of a.history()) events.push({ seq: e.seq, type: e.type, data: e.data, source: e.source });
const deals = a.state("deals");
await deals.ready;
deals.set("D1", { stage: "won", amount: 5 });
// A second agent reads the entity through the room.
const b = await connect({ host, team: "scratch", agent: "agent-2", role: "test" });
const seen = b.state("deals");
await seen.ready;
const deadline = Date.now() + 10_000;
while (seen.get("D1") === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
console.log(JSON.stringify({ published: published.seq, events, entity: seen.get("D1") ?? null }));
await Promise.all([a.close(), b.close()]);
`,
    );
    const agent = await run(process.execPath, ["agent.mjs", `127.0.0.1:${port}`], { cwd: project, timeout: 30_000 });
    expect(JSON.parse(agent.stdout)).toEqual({
      published: 1,
      events: [{ seq: 1, type: "deal.closed", data: { dealId: "D1" }, source: "agent-1" }],
      entity: { stage: "won", amount: 5 },
    });
    // The installed CLI reads the same entity back (default host: what dev listens on, here --host).
    const state = await run("npx", ["crosstalk", "--host", `127.0.0.1:${port}`, "state", "scratch", "deals", "D1"], {
      cwd: project,
      env: scratchEnv(),
    });
    expect(JSON.parse(state.stdout)).toEqual({ stage: "won", amount: 5 });
    expect(readdirSync(persist).length).toBeGreaterThan(0); // the room stored into --persist

    await stopRoom();
    // The room went with it: nothing answers on the port any more.
    await eventually(async () => {
      await expect(fetch(`http://127.0.0.1:${port}/parties/main/scratch`)).rejects.toThrow();
    });
    // ~10 s alone; installing workerd and starting it take much longer on a loaded machine.
  }, 120_000);
});
