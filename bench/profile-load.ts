/**
 * Where the time of a big namespace load goes (`state.load_ms`): a real `partykit dev`, one
 * namespace of N entities (default 100,000), then loads by fresh agents with a timeline of the
 * client's side — socket open, step 1 sent, each binary frame in, Yjs apply start,
 * observers, ready — beside stock y-partykit loads of the same entities. The gap from step 1
 * sent to the first frame in is the room's (encode, compress, send).
 *
 *   node --import tsx bench/profile-load.ts     # N=20000 RUNS=3 to shorten; COLD=1; KEEP=1; NOGC=1
 *   node --import tsx --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile-load.ts
 */
import { type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import WebSocket from "ws";
import * as Y from "yjs";
import type { Team } from "../client/node.ts";
import { collectGarbage, range, startServer, stopServer, waitFor, withCpu, within, yClient } from "./lib.ts";

const N = Number(process.env.N ?? 100_000);
const RUNS = Number(process.env.RUNS ?? 3);
/**
 * COLD=1: before each load, every entity is written again — more than the room
 * keeps beside a compressed snapshot (`party/kept-snapshot.ts`) — so every load is made afresh.
 */
const COLD = process.env.COLD === "1";
/**
 * KEEP=1: every closed loader is kept here until the end, so its namespace stays on the heap,
 * as the test kit's pool (`server.agent()`) did before it forgot closed agents.
 */
const KEEP = process.env.KEEP === "1";
/** NOGC=1: no full collection before each load (as the state scenario did before): a load may pay for the last one's garbage. */
const NOGC = process.env.NOGC === "1";
const entity = (i: number) => ({
  stage: "open",
  amount: i,
  owner: `agent-${i % 10}`,
  updatedAt: 1_700_000_000_000 + i,
});

/** A point of a load: wall time, and this process's CPU time (every thread, GC helpers too), in ms. */
type Mark = { what: string; at: number; cpu: number };
const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/**
 * Every garbage collection of this process, kept to charge each phase of a load with the GC
 * pauses in it (the entries arrive a little after the collections, so reports print at the end).
 */
const collections: { at: number; ms: number; major: boolean }[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    // detail.kind: 1 minor (scavenge), 2 major (mark-compact), 4 incremental marking, 8 weak callbacks.
    const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
    collections.push({ at: e.startTime, ms: e.duration, major: kind === 2 });
  }
}).observe({ entryTypes: ["gc"] });

/** GC pause time in [from, to): total, and how much of it major collections. */
function gcIn(from: number, to: number): string {
  let ms = 0;
  let major = 0;
  for (const c of collections) {
    if (c.at < from || c.at >= to) continue;
    ms += c.ms;
    if (c.major) major += c.ms;
  }
  return ms < 1 ? "" : `GC ${ms.toFixed(0)}${major >= 1 ? ` (major ${major.toFixed(0)})` : ""}`;
}
/** Reports printed once every load is done and every GC entry has arrived. */
const reports: (() => void)[] = [];

function timeline() {
  const marks: Mark[] = [];
  const mark = (what: string) => marks.push({ what, at: performance.now(), cpu: cpuMs() });
  let frames = 0;
  let bytes = 0;
  class Timed extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.on("open", () => mark("socket open"));
      this.on("message", (data: Buffer, binary: boolean) => {
        if (!binary) return;
        frames++;
        bytes += data.byteLength;
        mark(`binary in #${frames} (${(data.byteLength / 1024).toFixed(0)} KiB)`);
      });
    }
    override send(data: unknown, ...rest: unknown[]): void {
      if (typeof data !== "string") mark("binary out");
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  /** Prints each mark's first time from `t0` (wall), and the wall, CPU and GC pause time since the mark before. */
  const print = (title: string, t0: number) => {
    const firsts = new Map<string, Mark>();
    for (const m of marks) if (!firsts.has(m.what)) firsts.set(m.what, m);
    const rows = [...firsts.values()].sort((a, b) => a.at - b.at);
    console.log(`${title}: ${(bytes / 1024).toFixed(0)} KiB in ${frames} binary frames`);
    console.log("      at  (+wall   +cpu)  GC pauses");
    let prev = rows[0] ?? { what: "", at: t0, cpu: cpuMs() };
    for (const m of rows) {
      const step = `(+${(m.at - prev.at).toFixed(0).padStart(5)} ${(m.cpu - prev.cpu).toFixed(0).padStart(6)})`;
      console.log(`  ${(m.at - t0).toFixed(0).padStart(6)} ms ${step} ${gcIn(prev.at, m.at).padEnd(20)} ${m.what}`);
      prev = m;
    }
  };
  return { WebSocket: Timed, mark, print };
}

const server = await startServer();
try {
  const team = "profile-load";
  const filler = await server.agent("filler", { team });
  const big = filler.state("big");
  await big.ready;
  for (let b = 0; b < N; b += 1000) {
    big.transact(() => {
      for (let i = b; i < Math.min(N, b + 1000); i++) big.set(`deal-${i}`, entity(i));
    });
    await new Promise((r) => setImmediate(r));
  }
  // The kit's pool forgets a closed agent: kept, a closed loader would keep its whole
  // namespace on this process's heap for the next loads.
  const witness = await server.agent("witness", { team });
  const seen = witness.state("big");
  await within("witness ready", seen.ready, 120_000);
  await waitFor("witness has every entity", () => seen.size >= N, { timeoutMs: 180_000, intervalMs: 20 });
  await witness.close();
  const yWriter = yClient(server, team);
  await yWriter.synced;
  const entities = yWriter.doc.getMap<Y.Map<unknown>>("entities");
  for (let b = 0; b < N; b += 1000) {
    yWriter.doc.transact(() => {
      for (let i = b; i < Math.min(N, b + 1000); i++)
        entities.set(`deal-${i}`, new Y.Map<unknown>(Object.entries(entity(i))));
    });
    await new Promise((r) => setImmediate(r));
  }
  const yWitness = yClient(server, team);
  await yWitness.synced;
  await waitFor("y witness has every entity", () => yWitness.doc.getMap("entities").size >= N, { timeoutMs: 180_000 });
  yWitness.destroy();
  console.log(`filled ${N} entities`);

  const kept: Team[] = [];
  for (const run of range(RUNS)) {
    if (COLD) {
      for (let b = 0; b < N; b += 1000)
        big.transact(() => {
          for (let i = b; i < Math.min(N, b + 1000); i++) big.update(`deal-${i}`, { amount: -run });
        });
      await new Promise((r) => setTimeout(r, 2000));
    }
    if (!NOGC) collectGarbage();
    const tl = timeline();
    let t0 = 0;
    let t1 = 0;
    let sizeMs = 0;
    const cpu = await withCpu(server, async () => {
      t0 = performance.now();
      tl.mark("start");
      const options = { team, WebSocket: tl.WebSocket, connectTimeoutMs: 120_000 };
      const name = `loader-${run}`;
      const loader = await server.agent(name, options);
      if (KEEP) kept.push(loader);
      tl.mark("agent connected");
      const ns = loader.state("big");
      const doc = ns.doc;
      doc.on("beforeTransaction", () => tl.mark("apply start"));
      doc.on("beforeObserverCalls", () => tl.mark("observers start"));
      doc.on("afterTransaction", () => tl.mark("observers done"));
      await within("namespace load", ns.ready, 120_000);
      tl.mark("ready");
      t1 = performance.now();
      if (ns.size < N) throw new Error(`loaded ${ns.size}`);
      sizeMs = performance.now() - t1;
      await loader.close();
    });
    reports.push(() => {
      tl.print(`crosstalk load ${run + 1}`, t0);
      console.log(`  GC in the load: ${gcIn(t0, t1) || "none"}; entity index after ready: ${sizeMs.toFixed(0)} ms`);
      console.log(
        `  room CPU ${(cpu.roomCpuS * 1000).toFixed(0)} ms, this process ${(cpu.benchCpuS * 1000).toFixed(0)} ms`,
      );
    });
    if (process.env.SKIP_Y === "1") continue;

    if (!NOGC) collectGarbage();
    const ytl = timeline();
    let y0 = 0;
    let y1 = 0;
    const yCpu = await withCpu(server, async () => {
      y0 = performance.now();
      ytl.mark("start");
      const y = yClient(server, team, { wire: { WebSocket: ytl.WebSocket } as never });
      y.doc.on("beforeTransaction", () => ytl.mark("apply start"));
      y.doc.on("afterTransaction", () => ytl.mark("observers done"));
      await y.synced;
      ytl.mark("synced");
      y1 = performance.now();
      y.destroy();
    });
    reports.push(() => {
      ytl.print(`y-partykit load ${run + 1}`, y0);
      console.log(`  GC in the load: ${gcIn(y0, y1) || "none"}`);
      console.log(
        `  room CPU ${(yCpu.roomCpuS * 1000).toFixed(0)} ms, this process ${(yCpu.benchCpuS * 1000).toFixed(0)} ms`,
      );
    });
  }
  yWriter.destroy();
  await filler.close();
  await new Promise((r) => setTimeout(r, 100));
  for (const report of reports) report();
} finally {
  await stopServer(server);
}
