/**
 * The crosstalk benchmark suite: `npm run bench` (about 15 minutes on 2 cores) or
 * `npm run bench -- --quick` (under 2 minutes, small sizes). `--only rpc,fanout` runs a
 * subset. Numbers are reported, never asserted: a progress line on stderr, a table on
 * stdout, and every run's raw values in `bench/results.json`.
 *
 * Scenarios run against a real `partykit dev` (the room plus baseline parties): one server
 * for short-lived rooms, another for the long stream history. Each measures crosstalk beside
 * its baseline in the same run.
 *
 * Every scenario runs in a child Node process of its own, with its own server, as benchmark
 * harnesses fork per benchmark: none inherits the heap, sockets, timers or loaded rooms (one
 * workerd isolate, one garbage collector) of the ones before, so a scenario measures the same
 * alone (`--only`) as in the full run, and every system in it starts from the same state. The
 * scenarios that share the long history (filling it takes minutes) run together, last, in one
 * child. This process only draws the progress line and writes the results.
 */
import { fork } from "node:child_process";
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import { writeBenchTable } from "../scripts/bench-table.ts";
import {
  type BenchServer,
  type Context,
  HistoryRoom,
  killAllServers,
  type Options,
  Progress,
  type Result,
  type Scenario,
  startServer,
  stopServer,
  summarize,
  table,
} from "./lib.ts";
import { append } from "./scenarios/append.ts";
import { fanout } from "./scenarios/fanout.ts";
import { join } from "./scenarios/join.ts";
import { memory } from "./scenarios/memory.ts";
import { offline } from "./scenarios/offline.ts";
import { reconnect } from "./scenarios/reconnect.ts";
import { rpc } from "./scenarios/rpc.ts";
import { scale } from "./scenarios/scale.ts";
import { slow } from "./scenarios/slow.ts";
import { soak } from "./scenarios/soak.ts";
import { state } from "./scenarios/state.ts";

/** Every scenario, in the order of the results (and of the README's table). */
const SCENARIOS: Scenario[] = [rpc, fanout, reconnect, offline, state, append, join, slow, soak, memory, scale];
/** Scenarios that need the long history: they share one room, so they run last, in one child process. */
const HISTORY = new Set([append, join, memory, scale].map((s) => s.name));

/** Messages from a child process (one group of scenarios) to this one. */
type ChildMessage =
  | { kind: "step"; label: string }
  | { kind: "status"; label: string }
  | {
      kind: "done";
      results: Record<string, Result>;
      failures: Record<string, string>;
      retried: Record<string, string>;
    };

function parseArgs(argv: string[]): { options: Options; only: Set<string> | null } {
  const quick = argv.includes("--quick");
  const runsArg = argv.find((a) => a.startsWith("--runs="));
  const onlyAt = argv.indexOf("--only");
  const onlyArg = argv.find((a) => a.startsWith("--only="))?.slice(7) ?? (onlyAt >= 0 ? argv[onlyAt + 1] : undefined);
  const runs = runsArg ? Number(runsArg.slice(7)) : quick ? 2 : 5;
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error("--runs must be an integer in 1..50");
  const only = onlyArg ? new Set(onlyArg.split(",")) : null;
  for (const name of only ?? []) {
    if (!SCENARIOS.some((s) => s.name === name)) throw new Error(`unknown scenario ${name}`);
  }
  return { options: { quick, runs }, only };
}

/**
 * Runs `scenarios` in this process, each tried once more should it fail (`partykit dev`
 * restarts workerd whenever a source file changes, which drops every socket
 * mid-measurement), with servers started lazily and stopped at the end.
 */
async function runScenarios(
  scenarios: Scenario[],
  options: Options,
  report: (message: ChildMessage) => void,
): Promise<Extract<ChildMessage, { kind: "done" }>> {
  const results: Record<string, Result> = {};
  const failures: Record<string, string> = {};
  const retried: Record<string, string> = {};
  let shared: Promise<BenchServer> | null = null;
  let history: Promise<HistoryRoom> | null = null;
  try {
    for (const scenario of scenarios) {
      for (let attempt = 1; attempt <= 2; attempt++) {
        const ctx: Context = {
          options,
          tag: `${Date.now().toString(36)}${attempt}`,
          step: (label) => report({ kind: "step", label: `${scenario.name}: ${label}` }),
          status: (label) => report({ kind: "status", label: `${scenario.name}: ${label}` }),
          server: () => {
            shared ??= startServer();
            return shared;
          },
          history: () => {
            history ??= startServer().then((server) => new HistoryRoom(server));
            return history;
          },
        };
        ctx.status("starting");
        try {
          for (const metric of await scenario.run(ctx)) results[`${scenario.name}.${metric.name}`] = summarize(metric);
          break;
        } catch (error) {
          const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
          process.stderr.write(`\n${scenario.name} failed (attempt ${attempt}): ${text}\n`);
          // One broken scenario must not cost the others' numbers.
          if (attempt === 2) failures[scenario.name] = text;
          else retried[scenario.name] = text.split("\n")[0] ?? text;
        }
      }
    }
  } finally {
    // Assigned inside callbacks, which TypeScript's narrowing does not see.
    const servers = [
      shared as Promise<BenchServer> | null,
      (history as Promise<HistoryRoom> | null)?.then((h) => h.server),
    ];
    for (const server of servers) if (server) await stopServer(await server).catch(() => {});
    killAllServers();
  }
  return { kind: "done", results, failures, retried };
}

/** A child process: runs the scenarios named after `--child` and sends what it measured to its parent. */
async function child(names: string[], options: Options): Promise<void> {
  // Every y-partykit provider in Node adds a process exit listener.
  process.setMaxListeners(200);
  const onSignal = () => {
    killAllServers();
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // The parent went away (its IPC channel closed): nobody will read the results.
  process.on("disconnect", onSignal);
  process.on("exit", killAllServers);
  const send = (message: ChildMessage) => process.send?.(message);
  const done = await runScenarios(
    names.map((name) => SCENARIOS.find((s) => s.name === name) as Scenario),
    options,
    send,
  );
  await new Promise<void>((resolve) => process.send?.(done, () => resolve()));
  process.off("disconnect", onSignal);
  process.disconnect?.();
}

/**
 * Runs one group of scenarios in a child process of its own (this script with `--child`);
 * a child that dies without reporting fails each of its scenarios.
 */
function runChild(
  group: Scenario[],
  argv: string[],
  progress: Progress,
): Promise<Extract<ChildMessage, { kind: "done" }>> {
  return new Promise((resolve) => {
    const proc = fork(import.meta.filename, [...argv, "--child", group.map((s) => s.name).join(",")], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    children.add(proc.pid ?? 0);
    let done: Extract<ChildMessage, { kind: "done" }> | null = null;
    proc.on("message", (message: ChildMessage) => {
      if (message.kind === "step") progress.step(message.label);
      else if (message.kind === "status") progress.status(message.label);
      else done = message;
    });
    proc.on("exit", (code, signal) => {
      children.delete(proc.pid ?? 0);
      if (done) return resolve(done);
      const text = `the child process running ${group.map((s) => s.name).join(", ")} exited (${signal ?? code}) without results`;
      process.stderr.write(`\n${text}\n`);
      resolve({
        kind: "done",
        results: {},
        failures: Object.fromEntries(group.map((s) => [s.name, text])),
        retried: {},
      });
    });
  });
}

/** Child processes running now: ended with this one. */
const children = new Set<number>();

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { options, only } = parseArgs(argv);
  const childAt = argv.indexOf("--child");
  if (childAt >= 0) return child((argv[childAt + 1] ?? "").split(","), options);
  const scenarios = SCENARIOS.filter((s) => !only || only.has(s.name));
  // One child per scenario; the history's scenarios last, together.
  const groups = [
    ...scenarios.filter((s) => !HISTORY.has(s.name)).map((s) => [s]),
    scenarios.filter((s) => HISTORY.has(s.name)),
  ].filter((g) => g.length > 0);
  const progress = new Progress(scenarios.reduce((n, s) => n + s.steps(options), 0));
  const results: Record<string, Result> = {};
  const failures: Record<string, string> = {};
  const retried: Record<string, string> = {};
  const started = Date.now();
  const onSignal = () => {
    for (const pid of children) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    }
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const measured: Record<string, Result> = {};
  try {
    for (const group of groups) {
      const done = await runChild(group, [...(options.quick ? ["--quick"] : []), `--runs=${options.runs}`], progress);
      Object.assign(measured, done.results);
      Object.assign(failures, done.failures);
      Object.assign(retried, done.retried);
    }
  } finally {
    progress.end();
  }
  // In the order of SCENARIOS, whatever order the children ran in.
  for (const scenario of SCENARIOS) {
    for (const [key, result] of Object.entries(measured))
      if (key.startsWith(`${scenario.name}.`)) results[key] = result;
  }

  const report = {
    quick: options.quick,
    runs: options.runs,
    date: new Date().toISOString(),
    durationS: Math.round((Date.now() - started) / 1000),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    results,
    retried,
    failures,
  };
  // Only a complete full run is the reference (bench/results.json and the README's table); a
  // quick or partial run (CI's smoke test, `--only`) goes beside it and changes neither.
  const complete = !options.quick && only === null && Object.keys(failures).length === 0;
  const file = complete ? "results.json" : "results.partial.json";
  writeFileSync(resolve(import.meta.dirname, file), `${JSON.stringify(report, null, 2)}\n`);
  if (complete) writeBenchTable(report);
  process.stdout.write(`${table(results)}\n`);
  process.stdout.write(
    `\n${options.quick ? "quick" : "full"} run, ${options.runs} runs per measurement (median shown), ` +
      `${report.durationS} s, node ${report.node}, ${report.cpus} cpus. Raw values: bench/${file}` +
      `${complete ? "; README.md's table regenerated" : ""}\n`,
  );
  if (Object.keys(failures).length > 0) {
    process.stdout.write(`failed scenarios: ${Object.keys(failures).join(", ")}\n`);
    process.exitCode = 1;
  }
}

await main();
