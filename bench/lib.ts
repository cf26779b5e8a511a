/**
 * Shared pieces of the benchmark suite: options, statistics, the progress line, the result
 * table, servers (a real `partykit dev` per scenario, started by the test kit), /proc readers
 * for the room process, and bounded waiting. The byte-counting, cuttable WebSocket, `sleep`
 * and polling are the test kit's (`testing/`, published as `crosstalk/testing`).
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import WebSocket from "ws";
import YPartyKitProvider from "y-partykit/provider";
import * as Y from "yjs";
import { PROTOCOL_VERSION, parseRoomFrame, traceparentFor, uuidv7 } from "../protocol/index.ts";
import { type CuttableSocket, eventually, type RoomServer, startRoom, type WsClass } from "../testing/index.ts";
import { inspectorSession, partykitInspector } from "../testing/inspector.ts";

export { cuttableSocket, sleep } from "../testing/index.ts";

export const BENCH_CONFIG = resolve(import.meta.dirname, "partykit.json");
const ROOT = resolve(import.meta.dirname, "..");

let snapshotDir: string | null = null;

/**
 * `partykit dev` rebuilds and restarts workerd whenever a source file changes, which drops
 * every socket mid-measurement. The servers therefore run a copy of the sources taken when
 * the suite starts (the same moment this process loaded the client), laid out like the repo
 * so `bench/partykit.json` works unchanged.
 */
function snapshotConfig(): string {
  if (!snapshotDir) {
    // Inside the repo (workerd refuses module paths that climb out of its working
    // directory), where git and biome do not look; packages resolve from the repo's own.
    const cache = join(ROOT, "node_modules", ".cache", "crosstalk-bench");
    mkdirSync(cache, { recursive: true });
    const dir = mkdtempSync(join(cache, "src-"));
    for (const part of ["party", "client", "protocol"]) cpSync(join(ROOT, part), join(dir, part), { recursive: true });
    mkdirSync(join(dir, "bench"));
    for (const file of [
      "partykit.json",
      "relay.ts",
      "relay-hibernate.ts",
      "relay-floor.ts",
      "relay-durable.ts",
      "yparty.ts",
    ]) {
      cpSync(join(ROOT, "bench", file), join(dir, "bench", file));
    }
    cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
    snapshotDir = dir;
  }
  return join(snapshotDir, "bench", "partykit.json");
}

function removeSnapshot(): void {
  if (!snapshotDir) return;
  rmSync(snapshotDir, { recursive: true, force: true });
  try {
    rmdirSync(dirname(snapshotDir));
  } catch {
    // Another run's snapshot is still there.
  }
  snapshotDir = null;
}

// ---------------------------------------------------------------------------------------
// Options and results

export type Options = {
  quick: boolean;
  /** Repetitions of each measurement; the median is reported. */
  runs: number;
};

/** One measured quantity: per-run values of crosstalk and, when there is one, of its baseline. */
export type Metric = {
  name: string;
  unit: string;
  runs: number[];
  baselineRuns?: number[];
  /** What the baseline is, e.g. "relay" or "y-partykit". */
  baselineName?: string;
  /** Context for the number: sizes, counts. */
  note?: string;
};

export type Result = {
  value: number;
  unit: string;
  baseline: number | null;
  baselineName: string | null;
  ratio: number | null;
  runs: number[];
  baselineRuns: number[] | null;
  note: string | null;
};

export type Scenario = {
  name: string;
  /** How many progress steps `run` will report, for the bar. */
  steps(options: Options): number;
  run(ctx: Context): Promise<Metric[]>;
};

export type Context = {
  options: Options;
  /** Advances the progress bar by one step. */
  step(label: string): void;
  /** Shows what is going on without advancing. */
  status(label: string): void;
  /** Unique per scenario attempt: goes into team and room names, so a retry starts clean. */
  tag: string;
  /** The server shared by scenarios with short-lived rooms (started lazily). */
  server(): Promise<BenchServer>;
  /** A server of its own for scenarios that need a long stream history (started lazily). */
  history(): Promise<HistoryRoom>;
};

export function summarize(metric: Metric): Result {
  const value = median(metric.runs);
  const baseline = metric.baselineRuns && metric.baselineRuns.length > 0 ? median(metric.baselineRuns) : null;
  return {
    value,
    unit: metric.unit,
    baseline,
    baselineName: baseline === null ? null : (metric.baselineName ?? null),
    ratio: baseline === null || baseline === 0 ? null : value / baseline,
    runs: metric.runs,
    baselineRuns: metric.baselineRuns ?? null,
    note: metric.note ?? null,
  };
}

// ---------------------------------------------------------------------------------------
// Statistics

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Nearest-rank percentile (p in 0..100); NaN for no values. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Runs `fn` `times` times in sequence and collects what it returns. */
export async function repeat<T>(times: number, fn: (run: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < times; i++) out.push(await fn(i));
  return out;
}

// ---------------------------------------------------------------------------------------
// Progress bar and table

export class Progress {
  #done = 0;
  #label = "";
  readonly #started = performance.now();
  readonly #tty = process.stderr.isTTY === true;
  #lastDraw = 0;

  constructor(readonly total: number) {}

  step(label: string): void {
    this.#done = Math.min(this.total, this.#done + 1);
    this.#label = label;
    this.#draw(true);
  }

  status(label: string): void {
    this.#label = label;
    this.#draw(false);
  }

  #draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const width = 30;
    const filled = Math.round((this.#done / Math.max(1, this.total)) * width);
    const secs = ((now - this.#started) / 1000).toFixed(0).padStart(4);
    const line = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${this.#done}/${this.total} ${secs}s ${this.#label}`;
    // Without a terminal, one line per step keeps logs readable.
    if (this.#tty) process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 120) - 1).padEnd(100)}`);
    else if (force) process.stderr.write(`${line}\n`);
  }

  end(): void {
    if (this.#tty) process.stderr.write("\n");
  }
}

export function formatNumber(n: number | null): string {
  if (n === null || Number.isNaN(n)) return "-";
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toLocaleString("en-US");
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

/** One row per metric: scenario, metric, value, unit, baseline, ratio, note (for the terminal and the README). */
export function resultRows(results: Record<string, Result>): string[][] {
  return Object.entries(results).map(([key, r]) => {
    const dot = key.indexOf(".");
    return [
      key.slice(0, dot),
      key.slice(dot + 1),
      formatNumber(r.value),
      r.unit,
      r.baseline === null ? "-" : `${formatNumber(r.baseline)} (${r.baselineName ?? "baseline"})`,
      r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`,
      r.note ?? "",
    ];
  });
}

export const RESULT_HEADER = ["scenario", "metric", "value", "unit", "baseline", "ratio", "note"];

export function table(results: Record<string, Result>): string {
  const header = RESULT_HEADER;
  const rows = resultRows(results);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const numeric = new Set([2, 4, 5]);
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric.has(i) ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number)))
      .join("  ")
      .trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

// ---------------------------------------------------------------------------------------
// Servers

export type BenchServer = RoomServer & {
  /** The `partykit dev` process (leader of its process group). */
  readonly pid: number;
  /** The workerd process that runs the rooms. */
  workerd(): number;
};

/**
 * A full garbage collection of this process, now (without `--expose-gc` on the command line).
 * Loads measured one after another leave their garbage (a 100,000-entity document is a few
 * hundred MB of heap): without this, whichever load next fills the heap pays for collecting
 * the one before it, whichever side that was.
 */
export function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

const live = new Set<BenchServer>();

/**
 * Starts a real `partykit dev` with the bench project (the crosstalk room plus the `relay`
 * and `yparty` baseline parties). Always pair with `stopServer` in a finally block.
 */
export async function startServer(vars: Record<string, string> = {}, config = BENCH_CONFIG): Promise<BenchServer> {
  const path = config === BENCH_CONFIG ? snapshotConfig() : config;
  let room: RoomServer;
  try {
    // The history fills publish millions of events from one socket as fast as the room takes
    // them: no per-connection rate limit, so the fill is not what is measured.
    room = await startRoom({
      config: path,
      vars: { CROSSTALK_PUBLISH_RATE: "100000000", CROSSTALK_PUBLISH_BURST: "100000000", ...vars },
      cwd: ROOT,
    });
  } catch (error) {
    // The harness leaves a server that never answered running: end it here.
    for (const p of processes()) {
      if (p.ppid !== process.pid || !cmdline(p.pid).includes(path)) continue;
      try {
        process.kill(-p.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    throw error;
  }
  const find = () => {
    const child = processes().find((p) => p.ppid === process.pid && cmdline(p.pid).includes(`--port\0${room.port}`));
    if (!child) throw new Error(`no partykit dev process for port ${room.port}`);
    return child.pid;
  };
  let pid = find();
  const server: BenchServer = {
    ...room,
    get pid() {
      return pid;
    },
    workerd(): number {
      const w = processes().find((p) => p.pgrp === pid && p.comm.startsWith("workerd"));
      if (!w) throw new Error(`no workerd under partykit dev ${pid}`);
      return w.pid;
    },
    async restart() {
      await room.restart();
      pid = find();
    },
  };
  live.add(server);
  return server;
}

export async function stopServer(server: BenchServer | null | undefined): Promise<void> {
  if (!server) return;
  live.delete(server);
  await server[Symbol.asyncDispose]();
}

/** Last resort on exit or a signal: kill every server's process group synchronously. */
export function killAllServers(): void {
  for (const server of live) {
    try {
      process.kill(-server.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    rmSync(server.persistDir, { recursive: true, force: true });
  }
  live.clear();
  removeSnapshot();
}

// ---------------------------------------------------------------------------------------
// /proc

type Proc = { pid: number; ppid: number; pgrp: number; comm: string; cpuSeconds: number };

const CLOCK_TICKS = 100;

function readStat(pid: number | string): Proc | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    // Fields after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    const f = stat.slice(close + 2).split(" ");
    return {
      pid: Number(pid),
      ppid: Number(f[1]),
      pgrp: Number(f[2]),
      comm,
      cpuSeconds: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS,
    };
  } catch {
    return null;
  }
}

function processes(): Proc[] {
  const out: Proc[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const p = readStat(entry);
    if (p) out.push(p);
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
}

/**
 * The room's V8 heap in MB as it is, without a GC: `used` (live and not yet collected) and
 * `committed` (what V8 holds from the system, part of the RSS). Unlike `heap()`, no heap
 * snapshot is taken, so reading it does not grow the RSS being measured.
 */
export async function v8HeapMb(server: BenchServer): Promise<{ used: number; committed: number }> {
  const session = await inspectorSession(await partykitInspector(server.pid), "v8HeapMb");
  try {
    const usage = (await within("Runtime.getHeapUsage", session.call("Runtime.getHeapUsage"), 30_000)) as {
      usedSize: number;
      totalSize: number;
    };
    return { used: usage.usedSize / 2 ** 20, committed: usage.totalSize / 2 ** 20 };
  } finally {
    session.close();
  }
}

/**
 * Makes the `partykit dev` this process starts next run on wrangler's newer workerd
 * (`MINIFLARE_WORKERD_PATH`, unless the caller set it): partykit's own cannot be CPU-profiled
 * (`testing/inspector.ts`). The same room code on a newer V8: read a profile's shares, and
 * take figures from runs without it. Call before `startServer`.
 */
export function useProfilableWorkerd(): void {
  if (process.env.MINIFLARE_WORKERD_PATH) return;
  const fromWrangler = createRequire(createRequire(import.meta.url).resolve("wrangler/package.json"));
  process.env.MINIFLARE_WORKERD_PATH = (fromWrangler("workerd") as { default: string }).default;
}

/**
 * A V8 CPU profile of the room while `fn` runs, sampled every `intervalUs`, written to `file`
 * for DevTools, with the bundle its line numbers refer to beside it (`<file>.js`). Returns how
 * many samples it holds. The server must run on a profilable workerd (`useProfilableWorkerd`).
 */
export async function writeRoomProfile(
  server: BenchServer,
  file: string,
  intervalUs: number,
  fn: () => Promise<unknown>,
): Promise<number> {
  const session = await inspectorSession(await partykitInspector(server.pid), "room profile");
  try {
    await session.call("Profiler.enable");
    // Before start: a running profiler keeps the interval it started with (about 10 ms in workerd).
    await session.call("Profiler.setSamplingInterval", { interval: intervalUs });
    await session.call("Profiler.start");
    await fn();
    const { profile } = (await session.call("Profiler.stop")) as { profile: { samples: unknown[] } };
    writeFileSync(file, JSON.stringify(profile));
    const scripts: { scriptId: string; url: string }[] = [];
    session.on("Debugger.scriptParsed", (s) => scripts.push(s as { scriptId: string; url: string }));
    await session.call("Debugger.enable");
    const bundle = scripts.find((s) => s.url.endsWith("server.ts") || s.url.endsWith("server.js"));
    if (bundle) {
      const { scriptSource } = (await session.call("Debugger.getScriptSource", { scriptId: bundle.scriptId })) as {
        scriptSource: string;
      };
      writeFileSync(`${file}.js`, scriptSource);
    }
    await session.call("Debugger.disable");
    return profile.samples.length;
  } finally {
    session.close();
  }
}

/** Resident set size of a process, in MB. */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}

/** Measures CPU seconds spent by the room process and by this process while `fn` runs. */
export async function withCpu<T>(
  server: BenchServer,
  fn: () => Promise<T>,
): Promise<{ result: T; wallS: number; roomCpuS: number; benchCpuS: number }> {
  const workerd = server.workerd();
  const room0 = readStat(workerd)?.cpuSeconds ?? 0;
  const bench0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await fn();
  const wallS = (performance.now() - t0) / 1000;
  const bench = process.cpuUsage(bench0);
  // partykit dev restarts workerd when a source file changes: then the figure is unknown.
  const room1 = readStat(workerd)?.cpuSeconds;
  if (room1 === undefined)
    process.stderr.write(`\nworkerd ${workerd} went away during a measurement (source edited?)\n`);
  return {
    result,
    wallS,
    roomCpuS: room1 === undefined ? Number.NaN : room1 - room0,
    benchCpuS: (bench.user + bench.system) / 1e6,
  };
}

// ---------------------------------------------------------------------------------------
// Byte-counting, cuttable WebSocket

/**
 * The kit's `cuttableSocket()`: a `ws` class to pass as `WebSocket` to `connect` or as
 * `WebSocketPolyfill` to y-partykit, counting payload bytes (`bytesReceived`, `bytesSent`),
 * recording the latest open (`openedAt`), cut with `cut()`, held offline with `down()`/`up()`.
 */
export type Wire = CuttableSocket<WsClass>;

// ---------------------------------------------------------------------------------------
// Raw sockets (relay baseline, fast history fill)

export type RawSocket = {
  ws: WebSocket;
  send(value: unknown): void;
  onMessage(fn: (text: string) => void): void;
  close(): void;
};

/** Opens a plain `ws` socket to `path` on the server and waits until it is open. */
export async function rawSocket(server: BenchServer, path: string): Promise<RawSocket> {
  const ws = new WebSocket(`ws://${server.host}${path}`);
  ws.binaryType = "arraybuffer";
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`socket to ${path} did not open`)), 10_000);
    ws.once("open", () => {
      clearTimeout(timer);
      res();
    });
    ws.once("error", (e) => {
      clearTimeout(timer);
      rej(e);
    });
  });
  return {
    ws,
    send: (value) => ws.send(typeof value === "string" ? value : JSON.stringify(value)),
    onMessage: (fn) => ws.on("message", (data, isBinary) => !isBinary && fn(String(data))),
    close: () => ws.terminate(),
  };
}

/**
 * A call through relay party `party` (the baseline of the rpc scenario): socket `a` sends a
 * request to `b` by connection id, `b` echoes its input back. The sockets are returned too,
 * for the caller to close (and to watch).
 */
export async function relayEcho(
  server: BenchServer,
  party: string,
  room: string,
): Promise<{ call: (input: unknown) => Promise<void>; caller: RawSocket; callee: RawSocket }> {
  const a = await rawSocket(server, `/parties/${party}/${room}?_pk=a`);
  const b = await rawSocket(server, `/parties/${party}/${room}?_pk=b`);
  b.onMessage((text) => {
    const frame = JSON.parse(text) as { from: string; id: number; input: unknown };
    b.send({ to: frame.from, id: frame.id, ok: true, output: frame.input });
  });
  const waiting = new Map<number, () => void>();
  let nextId = 0;
  a.onMessage((text) => {
    const { id } = JSON.parse(text) as { id: number };
    waiting.get(id)?.();
    waiting.delete(id);
  });
  const call = (input: unknown) =>
    new Promise<void>((res) => {
      const id = ++nextId;
      waiting.set(id, res);
      a.send({ to: "b", from: "a", id, method: "echo", input });
    });
  return { call, caller: a, callee: b };
}

/**
 * Calls from bare socket `a` to bare socket `b` (which answers `rpc.request`s with their
 * input), with the frames an agent sends (trace fields included unless BARE=1), each end
 * checking what it receives as a client must (`parseRoomFrame`): the client's floor.
 */
export function agentFrames(a: RawSocket, b: RawSocket, to: string): (input: unknown) => Promise<void> {
  b.onMessage((text) => {
    if (!text.startsWith('{"type":"rpc.request"')) return;
    const parsed = parseRoomFrame(text);
    if (!parsed.ok || parsed.frame.type !== "rpc.request") throw new Error(`not a request: ${text}`);
    const frame = parsed.frame;
    b.send({ type: "rpc.result", id: frame.id, ok: true, output: frame.input });
  });
  const waiting = new Map<string, () => void>();
  let nextRef = 0;
  a.onMessage((text) => {
    if (!text.startsWith('{"type":"rpc.response"')) return;
    const parsed = parseRoomFrame(text);
    if (!parsed.ok || parsed.frame.type !== "rpc.response") throw new Error(`not a response: ${text}`);
    const { ref } = parsed.frame;
    waiting.get(ref)?.();
    waiting.delete(ref);
  });
  return (input) =>
    new Promise<void>((res) => {
      const ref = `r${++nextRef}`;
      const callId = uuidv7();
      waiting.set(ref, res);
      a.send({
        type: "rpc.call",
        ref,
        to,
        method: "echo",
        input,
        timeoutMs: 30_000,
        ...(process.env.BARE === "1" ? {} : { callId, correlationId: callId, traceparent: traceparentFor(callId) }),
      });
    });
}

/**
 * A call through the floor party (`relay-floor.ts`: the hibernating relay doing only what a
 * room must per call frame), between bare sockets sending an agent's frames (`agentFrames`):
 * what a perfect room and a perfect client would reach. The sockets are returned for closing.
 */
export async function floorEcho(
  server: BenchServer,
  room: string,
): Promise<{ call: (input: unknown) => Promise<void>; caller: RawSocket; callee: RawSocket }> {
  const caller = await rawSocket(server, `/parties/relayfloor/${room}?_pk=floor-caller`);
  const callee = await rawSocket(server, `/parties/relayfloor/${room}?_pk=floor-callee`);
  return { call: agentFrames(caller, callee, "floor-callee"), caller, callee };
}

// ---------------------------------------------------------------------------------------
// Waiting, always bounded

/** Polls `done` every `intervalMs` until true; throws after `timeoutMs`. */
export async function waitFor(
  what: string,
  done: () => boolean,
  { timeoutMs = 60_000, intervalMs = 2 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  await eventually(
    () => {
      if (!done()) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    },
    { timeoutMs, intervalMs },
  );
}

/** Rejects if `promise` takes longer than `timeoutMs`. */
export function within<T>(what: string, promise: Promise<T>, timeoutMs = 60_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------
// Event payloads and a long history

/** A small, realistic event body (about 100 bytes of JSON). */
export const eventData = (n: number) => ({ n, deal: `D-${n % 997}`, amount: 1234.5, note: "benchmark event" });

/**
 * A room with one stream (`main` of team `history`) that scenarios grow as needed. Filling
 * uses a raw socket with prebuilt publish frames, a few in flight: the fill is not measured,
 * and this keeps the client's own validation out of the way.
 */
export class HistoryRoom {
  readonly team = "history";
  size = 0;
  #socket: RawSocket | null = null;
  readonly #waiting = new Map<string, { ok: () => void; fail: (e: Error) => void }>();
  #nextRef = 0;

  constructor(readonly server: BenchServer) {}

  async fillTo(target: number, onProgress: (size: number) => void = () => {}): Promise<void> {
    if (this.size >= target) return;
    const socket = await this.#connect();
    const BATCH = 1000;
    const IN_FLIGHT = 3;
    const inFlight = new Set<Promise<void>>();
    const deadline = performance.now() + 20 * 60_000;
    while (this.size < target) {
      if (performance.now() > deadline) throw new Error("history fill took over 20 minutes");
      const count = Math.min(BATCH, target - this.size);
      const first = this.size + 1;
      const events = range(count).map((i) => ({
        id: `fill-${first + i}`,
        type: "bench.filled",
        data: eventData(first + i),
      }));
      const ref = `f${++this.#nextRef}`;
      const acked = new Promise<void>((ok, fail) => this.#waiting.set(ref, { ok, fail }));
      socket.send({ type: "publish", ref, stream: "main", events });
      this.size += count;
      const tracked = within(`fill ack ${ref}`, acked, 60_000).then(() => {
        inFlight.delete(tracked);
      });
      // Raced and awaited below; this only keeps a failure from being reported as unhandled.
      tracked.catch(() => {});
      inFlight.add(tracked);
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      onProgress(this.size);
    }
    await Promise.all(inFlight);
  }

  async #connect(): Promise<RawSocket> {
    if (this.#socket && this.#socket.ws.readyState === WebSocket.OPEN) return this.#socket;
    const token = await this.server.token("filler", "bench", { team: this.team });
    const path = `/parties/main/${this.team}?agent=filler&role=bench&v=${PROTOCOL_VERSION}&_pk=filler&token=${token}`;
    const socket = await rawSocket(this.server, path);
    socket.onMessage((text) => {
      const frame = JSON.parse(text) as { type: string; ref?: string; error?: unknown };
      const waiting = frame.ref ? this.#waiting.get(frame.ref) : undefined;
      if (!waiting || !frame.ref) return;
      this.#waiting.delete(frame.ref);
      if (frame.type === "publish.ack") waiting.ok();
      else waiting.fail(new Error(`history fill refused: ${JSON.stringify(frame.error)}`));
    });
    this.#socket = socket;
    return socket;
  }

  /** Forgets the filler socket (after a server restart). */
  disconnect(): void {
    this.#socket?.close();
    this.#socket = null;
  }
}

// ---------------------------------------------------------------------------------------
// y-partykit clients (baseline)

export type YClient = { doc: Y.Doc; provider: YPartyKitProvider; synced: Promise<void>; destroy(): void };

/** A stock y-partykit provider on the `yparty` party; `synced` resolves after its first sync. */
export function yClient(
  server: BenchServer,
  room: string,
  options: { wire?: Wire; maxBackoffTime?: number } = {},
): YClient {
  const doc = new Y.Doc();
  const provider = new YPartyKitProvider(server.host, room, doc, {
    party: "yparty",
    // `ws` stands in for the browser WebSocket; the provider only uses the common surface.
    WebSocketPolyfill: (options.wire?.WebSocket ?? WebSocket) as unknown as typeof globalThis.WebSocket,
    // Node has a global BroadcastChannel: without this, providers in one process would
    // exchange updates in memory instead of through the server.
    disableBc: true,
    maxBackoffTime: options.maxBackoffTime ?? 2500,
  });
  const synced = within(
    `y-partykit sync of ${room}`,
    new Promise<void>((res) => {
      if (provider.synced) return res();
      const onSync = (s: boolean) => {
        if (!s) return;
        provider.off("sync", onSync);
        res();
      };
      provider.on("sync", onSync);
    }),
    120_000,
  );
  return {
    doc,
    provider,
    synced,
    destroy: () => {
      provider.destroy();
      doc.destroy();
    },
  };
}

/** An event shaped like a crosstalk stored event, for the baselines' payloads. */
export const storedLike = (seq: number, data: unknown, stream = "main") => ({
  id: `0190b2f4-${seq.toString(16).padStart(4, "0")}-7000-8000-${seq.toString(16).padStart(12, "0")}`,
  type: "bench.event",
  data,
  stream,
  seq,
  ts: Date.now(),
  source: "publisher",
});
