/**
 * slow: what one agent that stops reading its socket costs the others and the room. Ten
 * subscribers consume N events (100k; quick: 10k) published at full speed, once with an
 * eleventh subscriber behind a fault proxy that stops reading what the room sends (`stall`),
 * once without it; the two runs alternate (A/B interleaved on the same server).
 *
 * - `p99_ratio`: the ten's p99 delivery latency (publish to handler) with the stuck agent
 *   over the same run's neighbour without it (per pair; the median pair is shown).
 * - `p99`: that p99 itself, with the run without the stuck agent as baseline.
 * - `room_rss_growth_mb`: the room process's (workerd) peak RSS during the run over its RSS
 *   at the start; baseline: the same without the stuck agent. The room holds a stuck socket to
 *   its unread budget (`maxUnreadBytes`, 8 MiB) and then closes it with `SlowReader`.
 * - `catchup_ms`: once the stuck agent reads again, until it holds all N events (it was
 *   closed, reconnects, and catches up from the live window and the archive).
 */

import WebSocket from "ws";
import type { Team } from "../../client/node.ts";
import { CLOSE_CODES } from "../../protocol/index.ts";
import { type FaultProxy, startFaultProxy } from "../../testing/index.ts";
import { type BenchServer, eventData, type Metric, percentile, range, rssMb, type Scenario, waitFor } from "../lib.ts";

const SUBSCRIBERS = 10;
/** A pair of 100k-event runs takes ~3 min here: at most three pairs, whatever `--runs` says. */
const pairsOf = (runs: number) => Math.min(runs, 3);
const BATCH = 500;
/** Batches the publisher has unanswered at once: full speed without an unbounded client queue. */
const IN_FLIGHT = 8;

type Outcome = { p99: number; growthMb: number; catchupMs: number | null; slowClosed: boolean };

async function once(server: BenchServer, proxy: FaultProxy, team: string, n: number, stuck: boolean): Promise<Outcome> {
  const agents: Team[] = [];
  const closes: number[] = [];
  class Recording extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.on("close", (code: number) => closes.push(code));
    }
  }
  try {
    const fast = await Promise.all(range(SUBSCRIBERS).map((i) => server.agent(`fast-${i}`, { team })));
    agents.push(...fast);
    const publisher = await server.agent("publisher", { team });
    agents.push(publisher);
    const counts = fast.map(() => 0);
    const latencies: number[] = [];
    await Promise.all(
      fast.map(
        (a, i) =>
          a.subscribe(">", (e) => {
            counts[i] = (counts[i] ?? 0) + 1;
            latencies.push(performance.now() - (e.data as { t: number }).t);
          }).ready,
      ),
    );
    let slowCount = 0;
    if (stuck) {
      const slow = await server.agent("stuck", {
        team,
        host: proxy.host,
        WebSocket: Recording,
        heartbeatIntervalMs: 0,
      });
      agents.push(slow);
      await slow.subscribe(">", () => {
        slowCount++;
      }).ready;
      proxy.mode = "stall";
    }
    const workerd = server.workerd();
    const rss0 = rssMb(workerd);
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMb(workerd));
    }, 250);
    try {
      const pending = new Set<Promise<unknown>>();
      for (let from = 0; from < n; from += BATCH) {
        while (pending.size >= IN_FLIGHT) await Promise.race(pending);
        const t = performance.now();
        const batch = range(Math.min(BATCH, n - from)).map((k) => ({
          type: "bench.slow",
          data: { ...eventData(from + k), t },
        }));
        const sent: Promise<unknown> = publisher.publishBatch(batch).finally(() => pending.delete(sent));
        pending.add(sent);
      }
      await Promise.all(pending);
      await waitFor("all ten subscribers have every event", () => counts.every((c) => c >= n), { timeoutMs: 300_000 });
      peak = Math.max(peak, rssMb(workerd));
    } finally {
      clearInterval(sampler);
    }
    let catchupMs: number | null = null;
    if (stuck) {
      proxy.mode = "pass";
      const t0 = performance.now();
      await waitFor("the stuck agent caught up", () => slowCount >= n, { timeoutMs: 300_000 });
      catchupMs = performance.now() - t0;
    }
    return {
      p99: percentile(latencies, 99),
      growthMb: peak - rss0,
      catchupMs,
      slowClosed: closes.includes(CLOSE_CODES.SlowReader.code),
    };
  } finally {
    proxy.mode = "pass";
    await Promise.all(agents.map((a) => a.close()));
  }
}

export const slow: Scenario = {
  name: "slow",
  steps: (options) => pairsOf(options.runs) * 2,
  async run(ctx) {
    const { quick } = ctx.options;
    const runs = pairsOf(ctx.options.runs);
    const n = quick ? 10_000 : 100_000;
    const server = await ctx.server();
    const proxy = await startFaultProxy({ port: server.port });
    const withStuck: Outcome[] = [];
    const without: Outcome[] = [];
    try {
      // Not measured: the first run on a fresh room grows its RSS by tens of MB whatever it does.
      await once(server, proxy, `slow-${ctx.tag}-warm`, n / 10, false);
      for (let run = 0; run < runs; run++) {
        // Alternate which goes first, so a drift of the machine falls on both.
        for (const stuck of run % 2 === 0 ? [false, true] : [true, false]) {
          const outcome = await once(server, proxy, `slow-${ctx.tag}-${run}-${stuck ? "s" : "n"}`, n, stuck);
          (stuck ? withStuck : without).push(outcome);
          ctx.step(`run ${run + 1}/${runs} ${stuck ? "with" : "without"} a stuck agent`);
        }
      }
    } finally {
      await proxy.close();
    }
    const closed = withStuck.filter((o) => o.slowClosed).length;
    const note = `${SUBSCRIBERS} subscribers, ${n.toLocaleString("en-US")} events at full speed; stuck agent closed with 4005 in ${closed}/${withStuck.length} runs`;
    const metrics: Metric[] = [
      {
        name: "p99_ratio",
        unit: "×",
        runs: withStuck.map((o, i) => o.p99 / (without[i]?.p99 ?? Number.NaN)),
        note: "others' p99 with a stuck agent ÷ without, per interleaved pair",
      },
      {
        name: "p99",
        unit: "ms",
        runs: withStuck.map((o) => o.p99),
        baselineRuns: without.map((o) => o.p99),
        baselineName: "no stuck agent",
        note,
      },
      {
        name: "room_rss_growth_mb",
        unit: "MB",
        runs: withStuck.map((o) => o.growthMb),
        baselineRuns: without.map((o) => o.growthMb),
        baselineName: "no stuck agent",
        note: "room (workerd) peak RSS during the run over its RSS at the start",
      },
      {
        name: "catchup_ms",
        unit: "ms",
        runs: withStuck.map((o) => o.catchupMs ?? Number.NaN),
        note: "the stuck agent reads again → holds every event (reconnect, live window, archive)",
      },
    ];
    return metrics;
  },
};
