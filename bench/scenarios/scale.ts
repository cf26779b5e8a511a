/**
 * scale: one room with 1,000 agents (quick: 200) and a history of 1M events (quick: 50k), on
 * the history server restarted cold. The agents live in 4 client processes (quick: 2),
 * `bench/scale-agents.ts`, so the clients' own CPU is not what is measured.
 *
 * - `agents_online_ms`: every agent told "connect" at the same instant; until every one is
 *   online and every one's roster (what the room sent it) lists the whole team.
 * - `rpc_p50_ms`: sequential calls between two agents of this process with everyone
 *   connected. Baseline: the same calls in the same room with 10 connected, before the storm.
 * - `fanout_p50_ms` / `fanout_p99_ms`: one publisher → every agent subscribed, events paced
 *   (5/s; send-to-receive, one machine clock).
 * - `room_heap_mb` (the worker's JS heap after a full GC, `room.heap()`) and `room_rss_mb`
 *   (workerd's RSS) with everyone connected and the stream's window loaded. Baseline: both
 *   with 10 connected.
 */
import { type ChildProcess, fork } from "node:child_process";
import { resolve } from "node:path";
import type { Team } from "../../client/node.ts";
import { type BenchServer, type Metric, percentile, range, rssMb, type Scenario, sleep, within } from "../lib.ts";
import { now, type ScaleCommand, type ScaleReply } from "../scale-agents.ts";

const BASE = 10;
const FAN_RATE = 5;
const STREAM = "fan";

/** A client process and a way to ask it something and wait for its answer. */
type Client = { child: ChildProcess; ask(command: ScaleCommand, timeoutMs?: number): Promise<ScaleReply> };

function startClient(): Client {
  const child = fork(resolve(import.meta.dirname, "..", "scale-agents.ts"), [], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let pending: { op: string; res: (r: ScaleReply) => void; rej: (e: Error) => void } | null = null;
  child.on("message", (reply: ScaleReply) => {
    if (!pending) return;
    const p = pending;
    pending = null;
    if (reply.op === "error") p.rej(new Error(`scale client: ${reply.message}`));
    else p.res(reply);
  });
  child.on("exit", (code) => pending?.rej(new Error(`scale client exited (${code}) during ${pending.op}`)));
  return {
    child,
    ask(command, timeoutMs = 180_000) {
      if (pending) throw new Error(`scale client is busy with ${pending.op}`);
      const answer = new Promise<ScaleReply>((res, rej) => {
        pending = { op: command.op, res, rej };
      });
      child.send(command);
      return within(`scale client: ${command.op}`, answer, timeoutMs);
    },
  };
}

/** `n` sequential calls; per-call milliseconds. */
async function calls(caller: Team, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await caller.call("scale-callee", "echo", { i, text: "ping" });
    out.push(performance.now() - t);
  }
  return out;
}

async function reports(clients: Client[]) {
  const all = await Promise.all(clients.map((c) => c.ask({ op: "report" })));
  return all.map((r) => {
    if (r.op !== "report") throw new Error(`scale client answered ${r.op} to report`);
    return r;
  });
}

export const scale: Scenario = {
  name: "scale",
  steps: () => 6,
  async run(ctx) {
    const { quick } = ctx.options;
    const EVENTS = quick ? 50_000 : 1_000_000;
    const AGENTS = quick ? 200 : 1000;
    const PROCESSES = quick ? 2 : 4;
    const CALLS = quick ? 100 : 300;
    const FAN_EVENTS = quick ? 10 : 50;
    const history = await ctx.history();
    await history.fillTo(EVENTS, (s) => ctx.status(`filling to ${s.toLocaleString("en-US")} events`));
    history.disconnect();
    await history.server.restart();
    await sleep(1000);
    const server: BenchServer = history.server;
    const team = history.team;
    ctx.step(`history of ${history.size.toLocaleString("en-US")} events, room restarted`);

    const base: Team[] = [];
    const clients: Client[] = [];
    try {
      const names = ["caller", "callee", "publisher", ...range(BASE - 3).map((i) => `base-${i}`)];
      base.push(...(await Promise.all(names.map((n) => server.agent(`scale-${n}`, { team, role: "bench" })))));
      const [caller, callee, publisher, observer] = base as [Team, Team, Team, Team];
      callee.handle("echo", (input) => input);
      // The long stream's window is loaded, as in a room in use.
      await within("subscribe to the long stream", observer.subscribe(">", () => {}).ready, 120_000);
      await publisher.publish("bench.scale", { n: 0 });
      await within(
        "the callee's method in the roster",
        (async () => {
          while (!caller.agents().some((a) => a.agent === "scale-callee" && a.methods.includes("echo")))
            await sleep(20);
        })(),
        60_000,
      );
      const call10 = calls.bind(null, caller);
      await call10(20);
      const rpc10 = await call10(CALLS);
      const heap10 = await server.heap();
      const rss10 = rssMb(server.workerd());
      ctx.step(`${BASE} connected: heap ${heap10.toFixed(1)} MB, RSS ${rss10.toFixed(0)} MB`);

      // The storm: tokens minted and processes started first, then every agent at once.
      const shares = range(PROCESSES).map(() => [] as { name: string; token: string }[]);
      for (const i of range(AGENTS)) {
        const name = `scale-agent-${i}`;
        shares[i % PROCESSES]?.push({ name, token: await server.token(name, "bench", { team }) });
      }
      clients.push(...range(PROCESSES).map(startClient));
      const t0 = now();
      const online = await Promise.all(
        clients.map((c, i) =>
          c.ask({ op: "connect", host: server.host, team, agents: shares[i] ?? [], connectTimeoutMs: 150_000 }),
        ),
      );
      const failed = online.flatMap((o) => (o.op === "online" ? o.failed : []));
      if (failed.length > 0)
        throw new Error(`${failed.length} agents did not get in: ${failed.slice(0, 3).join("; ")}`);
      const connectedMs = Math.max(...online.flatMap((o) => (o.op === "online" ? o.onlineAt : []))) - t0;
      const total = AGENTS + BASE;
      let seen = await reports(clients);
      while (Math.min(...seen.map((r) => r.minRoster)) < total || observer.agents().length < total) {
        if (now() - t0 > 180_000) throw new Error(`rosters incomplete after 180 s (${seen.map((r) => r.minRoster)})`);
        await sleep(100);
        seen = await reports(clients);
      }
      const onlineMs = now() - t0;
      const rosterFrames = Math.max(...seen.map((r) => r.maxRosterFrames));
      ctx.step(`${AGENTS} agents online in ${(onlineMs / 1000).toFixed(1)} s`);

      await call10(20);
      const rpc1000 = await call10(CALLS);
      ctx.step(`rpc p50 ${percentile(rpc1000, 50).toFixed(2)} ms with ${total} connected`);

      await Promise.all(clients.map((c) => c.ask({ op: "subscribe", stream: STREAM })));
      await reports(clients);
      for (let n = 1; n <= FAN_EVENTS; n++) {
        await publisher.publish("bench.fanout", { n, t: now() }, { stream: STREAM });
        await sleep(1000 / FAN_RATE);
      }
      const latencies: number[] = [];
      const fanStart = now();
      for (;;) {
        for (const r of await reports(clients)) latencies.push(...r.latencies);
        if (latencies.length >= FAN_EVENTS * AGENTS) break;
        if (now() - fanStart > 60_000)
          throw new Error(`fan-out: ${latencies.length} of ${FAN_EVENTS * AGENTS} delivered`);
        await sleep(100);
      }
      ctx.step(`fan-out to ${AGENTS}: p50 ${percentile(latencies, 50).toFixed(0)} ms`);

      const heap = await server.heap();
      const rss = rssMb(server.workerd());
      ctx.step(`${total} connected: heap ${heap.toFixed(1)} MB, RSS ${rss.toFixed(0)} MB`);

      const size = history.size.toLocaleString("en-US");
      const note = `${AGENTS} agents in ${PROCESSES} processes, ${size} events`;
      const baseline = { baselineName: `${BASE} connected` };
      const one = (name: string, unit: string, value: number, rest: Partial<Metric> = {}): Metric => ({
        name,
        unit,
        runs: [value],
        note,
        ...rest,
      });
      return [
        one("agents_online_ms", "ms", onlineMs, {
          note: `${note}: all online and every roster complete (all connected after ${Math.round(connectedMs)} ms; at most ${rosterFrames} roster frames per agent)`,
        }),
        one("rpc_p50_ms", "ms", percentile(rpc1000, 50), {
          ...baseline,
          baselineRuns: [percentile(rpc10, 50)],
          note: `${note}: ${CALLS} sequential calls`,
        }),
        one("fanout_p50_ms", "ms", percentile(latencies, 50), {
          note: `1 → ${AGENTS} subscribers, ${FAN_EVENTS} events at ${FAN_RATE}/s`,
        }),
        one("fanout_p99_ms", "ms", percentile(latencies, 99)),
        one("room_heap_mb", "MB", heap, { ...baseline, baselineRuns: [heap10], note: `${note}: JS heap after GC` }),
        one("room_rss_mb", "MB", rss, { ...baseline, baselineRuns: [rss10], note: `${note}: workerd RSS` }),
      ];
    } finally {
      await Promise.all(
        clients.map(async (c) => {
          try {
            await c.ask({ op: "close" }, 30_000);
          } catch {
            c.child.kill("SIGKILL");
          }
        }),
      );
      await Promise.all(base.map((a) => a.close()));
    }
  },
};
