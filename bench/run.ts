/**
 * The crosstalk benchmark suite: `npm run bench` (about 15 minutes on 2 cores) or
 * `npm run bench -- --quick` (under 2 minutes, small sizes). `--only rpc,fanout` runs a
 * subset. Numbers are reported, never asserted: a progress line on stderr, a table on
 * stdout, and every run's raw values in `bench/results.json`.
 *
 * Scenarios run against a real `partykit dev` (the room plus baseline parties): one shared
 * server for short-lived rooms, another for the long stream history. Each measures crosstalk
 * beside its baseline in the same run.
 */
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

/** Scenarios that need a long history come last and share one room. */
const SCENARIOS: Scenario[] = [rpc, fanout, reconnect, offline, state, append, join, slow, soak, memory, scale];

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

async function main(): Promise<void> {
  const { options, only } = parseArgs(process.argv.slice(2));
  const scenarios = SCENARIOS.filter((s) => !only || only.has(s.name));
  const progress = new Progress(scenarios.reduce((n, s) => n + s.steps(options), 0));
  const results: Record<string, Result> = {};
  const failures: Record<string, string> = {};
  const retried: Record<string, string> = {};
  let shared: Promise<BenchServer> | null = null;
  let history: Promise<HistoryRoom> | null = null;
  const started = Date.now();

  // Every y-partykit provider in Node adds a process exit listener.
  process.setMaxListeners(200);
  const onSignal = () => {
    killAllServers();
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", killAllServers);

  try {
    for (const scenario of scenarios) {
      // A failed scenario is tried once more: `partykit dev` restarts workerd whenever a
      // source file changes, which drops every socket mid-measurement.
      for (let attempt = 1; attempt <= 2; attempt++) {
        const ctx: Context = {
          options,
          tag: `${Date.now().toString(36)}${attempt}`,
          step: (label) => progress.step(`${scenario.name}: ${label}`),
          status: (label) => progress.status(`${scenario.name}: ${label}`),
          server: () => {
            shared ??= startServer();
            return shared;
          },
          history: () => {
            history ??= startServer().then((server) => new HistoryRoom(server));
            return history;
          },
        };
        progress.status(`${scenario.name}: starting`);
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
    progress.end();
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
