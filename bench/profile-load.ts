/**
 * Where the time of a big namespace load goes (`state.load_ms`): a real `partykit dev`, one
 * namespace of N entities (default 100,000), then loads by fresh agents with a timeline of the
 * client's side — socket open, step 1 sent, first and last binary frame in, Yjs apply start,
 * observers, ready — beside stock y-partykit loads of the same entities. The gap from step 1
 * sent to the first frame in is the room's (encode, compress, send).
 *
 *   node --import tsx bench/profile-load.ts            # N=20000 RUNS=3 to shorten; COLD=1
 *   node --import tsx --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile-load.ts
 */
import WebSocket from "ws";
import * as Y from "yjs";
import { range, startServer, stopServer, waitFor, withCpu, within, yClient } from "./lib.ts";

const N = Number(process.env.N ?? 100_000);
const RUNS = Number(process.env.RUNS ?? 3);
/**
 * COLD=1: before each load, every entity is written again — more than the room
 * keeps beside a compressed snapshot (`party/kept-snapshot.ts`) — so every load is made afresh.
 */
const COLD = process.env.COLD === "1";
const entity = (i: number) => ({
  stage: "open",
  amount: i,
  owner: `agent-${i % 10}`,
  updatedAt: 1_700_000_000_000 + i,
});

type Mark = { what: string; at: number };
function timeline() {
  const marks: Mark[] = [];
  const mark = (what: string) => marks.push({ what, at: performance.now() });
  let frames = 0;
  let bytes = 0;
  class Timed extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.on("open", () => mark("socket open"));
      this.on("message", (data: Buffer, binary: boolean) => {
        if (!binary) return;
        if (frames++ === 0) mark("first binary in");
        bytes += data.byteLength;
        mark("last binary in");
      });
    }
    override send(data: unknown, ...rest: unknown[]): void {
      if (typeof data !== "string") mark("binary out");
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  const print = (title: string, t0: number) => {
    const seen = new Map<string, number>();
    for (const m of marks) seen.set(m.what, m.at);
    const firsts = new Map<string, number>();
    for (const m of marks) if (!firsts.has(m.what)) firsts.set(m.what, m.at);
    const rows = [...firsts].map(([w, at]) => [w, at] as const);
    const last = seen.get("last binary in");
    if (last !== undefined) rows.push(["last binary in", last]);
    rows.sort((a, b) => a[1] - b[1]);
    console.log(`${title}: ${(bytes / 1024).toFixed(0)} KiB in ${frames} binary frames`);
    let prev = t0;
    for (const [w, at] of rows) {
      console.log(`  ${(at - t0).toFixed(0).padStart(6)} ms  (+${(at - prev).toFixed(0).padStart(5)})  ${w}`);
      prev = at;
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

  for (const run of range(RUNS)) {
    if (COLD) {
      for (let b = 0; b < N; b += 1000)
        big.transact(() => {
          for (let i = b; i < Math.min(N, b + 1000); i++) big.update(`deal-${i}`, { amount: -run });
        });
      await new Promise((r) => setTimeout(r, 2000));
    }
    const tl = timeline();
    const cpu = await withCpu(server, async () => {
      const t0 = performance.now();
      const loader = await server.agent(`loader-${run}`, { team, WebSocket: tl.WebSocket, connectTimeoutMs: 120_000 });
      tl.mark("agent connected");
      const ns = loader.state("big");
      const doc = ns.doc;
      doc.on("beforeTransaction", () => tl.mark("apply start"));
      doc.on("beforeObserverCalls", () => tl.mark("observers start"));
      doc.on("afterTransaction", () => tl.mark("observers done"));
      await within("namespace load", ns.ready, 120_000);
      tl.mark("ready");
      tl.print(`crosstalk load ${run + 1}`, t0);
      const s0 = performance.now();
      if (ns.size < N) throw new Error(`loaded ${ns.size}`);
      console.log(`  (size after ready: ${(performance.now() - s0).toFixed(0)} ms)`);
      await loader.close();
    });
    console.log(
      `  room CPU ${(cpu.roomCpuS * 1000).toFixed(0)} ms, this process ${(cpu.benchCpuS * 1000).toFixed(0)} ms`,
    );
    if (process.env.SKIP_Y === "1") continue;

    const ytl = timeline();
    const yCpu = await withCpu(server, async () => {
      const y0 = performance.now();
      const y = yClient(server, team, { wire: { WebSocket: ytl.WebSocket } as never });
      y.doc.on("beforeTransaction", () => ytl.mark("apply start"));
      y.doc.on("afterTransaction", () => ytl.mark("observers done"));
      await y.synced;
      ytl.mark("synced");
      ytl.print(`y-partykit load ${run + 1}`, y0);
      y.destroy();
    });
    console.log(
      `  room CPU ${(yCpu.roomCpuS * 1000).toFixed(0)} ms, this process ${(yCpu.benchCpuS * 1000).toFixed(0)} ms`,
    );
  }
  yWriter.destroy();
  await filler.close();
} finally {
  await stopServer(server);
}
