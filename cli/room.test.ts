/**
 * `crosstalk dev` and `crosstalk deploy` around a stand-in partykit: a script installed as
 * node_modules/partykit in a scratch project that records how it was started and, for
 * `dev`, answers HTTP on the port it was given. What runs the real partykit with the real
 * room, from an installed tarball, is test/install.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, freePort } from "../test/harness.ts";
import { sink } from "../test/sink.ts";
import { main } from "./main.ts";
import { findPartykit, packageRoot, partykitRange, projectNameOf, writeRoomConfig } from "./room.ts";

const ROOT = resolve(import.meta.dirname, "..");

/** A partykit stand-in: logs {argv, cwd, config} as one JSON line, then serves or exits. */
const FAKE_BIN = `
import { appendFileSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
const argv = process.argv.slice(2);
const config = JSON.parse(readFileSync(argv[argv.indexOf("-c") + 1], "utf8"));
appendFileSync(process.env.FAKE_LOG, JSON.stringify({ argv, cwd: process.cwd(), config }) + "\\n");
if (process.env.FAKE_EXIT) process.exit(Number(process.env.FAKE_EXIT));
if (argv[0] === "dev") {
  console.log("fake partykit dev");
  const server = createServer((req, res) => res.end("ok"));
  server.listen(Number(argv[argv.indexOf("--port") + 1]), "127.0.0.1");
  process.on("SIGTERM", () => process.exit(0));
}
`;

type Started = { argv: string[]; cwd: string; config: { name: string; main: string; compatibilityDate: string } };

let dir: string;
let project: string;
let log: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "crosstalk-room-cli-"));
  project = join(dir, "project");
  const pkg = join(project, "node_modules/partykit");
  mkdirSync(join(pkg, "dist"), { recursive: true });
  writeFileSync(
    join(pkg, "package.json"),
    JSON.stringify({ name: "partykit", version: "0.0.0-fake", bin: { partykit: "dist/bin.mjs" } }),
  );
  writeFileSync(join(pkg, "dist/bin.mjs"), FAKE_BIN);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "@acme/team-room", private: true }));
  log = join(dir, "started.ndjson");
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const started = (): Started[] =>
  existsSync(log)
    ? readFileSync(log, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Started)
    : [];

async function run(args: string[], opts: { cwd?: string; env?: Record<string, string>; signal?: AbortSignal } = {}) {
  const out = sink();
  const err = sink();
  const running = main(args, {
    stdout: out.stream,
    stderr: err.stream,
    cwd: opts.cwd ?? project,
    env: { FAKE_LOG: log, ...opts.env },
    signal: opts.signal,
  });
  return { running, stdout: out.text, stderr: err.text };
}

describe("finding partykit and the room", () => {
  it("finds partykit as node resolves it from the project, and names its bin", () => {
    expect(findPartykit([join(project, "some/nested/dir")])).toEqual({
      bin: join(project, "node_modules/partykit/dist/bin.mjs"),
      version: "0.0.0-fake",
    });
  });

  it("without partykit: PARTYKIT_MISSING with the command that installs the declared version", () => {
    const empty = mkdtempSync(join(dir, "empty-"));
    expect(partykitRange()).toBe(
      JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).peerDependencies.partykit,
    );
    expect(() => findPartykit([empty])).toThrow(
      expect.objectContaining({
        name: "RoomError",
        code: "PARTYKIT_MISSING",
        message: expect.stringContaining(`npm install --save-dev partykit@${partykitRange()}`),
      }),
    );
  });

  it("finds the room from the source and from the build alike", () => {
    expect(packageRoot()).toBe(ROOT);
    expect(packageRoot(join(ROOT, "dist/cli"))).toBe(ROOT);
    expect(() => packageRoot(dir)).toThrow(/party\/server\.ts/);
  });

  it("writes a partykit.json whose main is the packaged room, and removes it", () => {
    const config = writeRoomConfig(ROOT, "my-room");
    const written = JSON.parse(readFileSync(config.file, "utf8"));
    expect(written).toMatchObject({ name: "my-room", main: join(ROOT, "party/server.ts") });
    expect(existsSync(written.main)).toBe(true);
    config.remove();
    expect(existsSync(config.file)).toBe(false);
  });

  it("takes the deploy name from package.json without its scope, when PartyKit accepts it", () => {
    expect(projectNameOf(project)).toBe("team-room");
    const other = mkdtempSync(join(dir, "names-"));
    expect(projectNameOf(other)).toBeUndefined();
    writeFileSync(join(other, "package.json"), JSON.stringify({ name: "team_room" }));
    expect(projectNameOf(other)).toBeUndefined();
    writeFileSync(join(other, "package.json"), "{not json");
    expect(projectNameOf(other)).toBeUndefined();
  });
});

describe("crosstalk dev", () => {
  it("runs partykit dev on the packaged room until stopped, then cleans up", async () => {
    rmSync(log, { force: true });
    const port = await freePort();
    const stop = new AbortController();
    const dev = await run(["dev", "--port", String(port), "--persist", "state", "--var", "CROSSTALK_LOG_WINDOW=500"], {
      signal: stop.signal,
    });
    await eventually(() => expect(dev.stdout()).toContain(`crosstalk room is running: host 127.0.0.1:${port}`));
    expect(dev.stdout()).toContain("fake partykit dev"); // partykit's output passes through
    const [start] = started();
    expect(start?.argv).toEqual([
      "dev",
      "-c",
      expect.stringMatching(/partykit\.json$/),
      "--port",
      String(port),
      "--persist",
      join(project, "state"),
      "--disable-request-cf-fetch",
      "--no-hotkeys",
      "--var",
      "CROSSTALK_LOG_WINDOW=500",
    ]);
    // partykit runs in the package folder (see spawnPartykit), on the packaged room.
    expect(start?.cwd).toBe(ROOT);
    expect(start?.config).toMatchObject({ name: "crosstalk", main: join(ROOT, "party/server.ts") });
    const config = start?.argv[2] as string;
    expect(existsSync(config)).toBe(true);

    stop.abort();
    expect(await dev.running, dev.stderr()).toBe(0);
    expect(existsSync(config)).toBe(false);
    // The stand-in is gone: its port is free again.
    await eventually(() => expect(listens(port)).resolves.toBe(false));
  });

  it("refuses a port in use (PORT_IN_USE) without starting partykit", async () => {
    rmSync(log, { force: true });
    const port = await freePort();
    const taken = createServer().listen(port, "127.0.0.1");
    try {
      const dev = await run(["dev", "--port", String(port)]);
      expect(await dev.running).toBe(1);
      expect(dev.stderr()).toMatch(new RegExp(`^PORT_IN_USE: cannot listen on 127\\.0\\.0\\.1:${port}`));
      expect(started()).toEqual([]);
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  it("reports partykit failing to start as PARTYKIT_FAILED", async () => {
    const dev = await run(["dev", "--port", String(await freePort())], { env: { FAKE_EXIT: "3" } });
    expect(await dev.running).toBe(1);
    expect(dev.stderr()).toBe("PARTYKIT_FAILED: partykit dev exited with 3 (its output is above)\n");
  });

  it("refuses bad options as usage errors (exit 2)", async () => {
    for (const args of [
      ["dev", "--port", "0"],
      ["dev", "--port", "70000"],
      ["dev", "--var", "no-equals"],
      ["deploy", "--name", "bad_name"],
    ]) {
      const r = await run(args);
      expect(await r.running, args.join(" ")).toBe(2);
    }
  });
});

describe("crosstalk deploy", () => {
  it("runs partykit deploy on the packaged room under the package.json name or --name", async () => {
    rmSync(log, { force: true });
    const byPackage = await run(["deploy", "--var", "A=1"]);
    expect(await byPackage.running, byPackage.stderr()).toBe(0);
    const byName = await run(["deploy", "--name", "acme-agents"]);
    expect(await byName.running, byName.stderr()).toBe(0);
    const [first, second] = started();
    expect(first?.argv).toEqual(["deploy", "-c", expect.any(String), "--name", "team-room", "--var", "A=1"]);
    expect(first?.config).toMatchObject({ name: "team-room", main: join(ROOT, "party/server.ts") });
    expect(second?.argv).toEqual(["deploy", "-c", expect.any(String), "--name", "acme-agents"]);
    expect(existsSync(first?.argv[2] as string)).toBe(false);
  });

  it("needs a project name (NO_PROJECT_NAME) and reports partykit's failure (PARTYKIT_FAILED)", async () => {
    const nameless = join(dir, "nameless");
    mkdirSync(join(nameless, "node_modules"), { recursive: true });
    rmSync(join(nameless, "node_modules/partykit"), { recursive: true, force: true });
    // The stand-in partykit, without a package.json name.
    const fake = join(project, "node_modules/partykit");
    const copy = join(nameless, "node_modules/partykit");
    mkdirSync(join(copy, "dist"), { recursive: true });
    writeFileSync(join(copy, "package.json"), readFileSync(join(fake, "package.json")));
    writeFileSync(join(copy, "dist/bin.mjs"), readFileSync(join(fake, "dist/bin.mjs")));
    const noName = await run(["deploy"], { cwd: nameless });
    expect(await noName.running).toBe(1);
    expect(noName.stderr()).toMatch(/^NO_PROJECT_NAME: no PartyKit project name: pass --name <project>/);

    const failed = await run(["deploy"], { env: { FAKE_EXIT: "1" } });
    expect(await failed.running).toBe(1);
    expect(failed.stderr()).toBe("PARTYKIT_FAILED: partykit deploy exited with 1\n");
  });
});

/** True while something accepts connections on 127.0.0.1:port. */
async function listens(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1_000) });
    return true;
  } catch {
    return false;
  }
}
