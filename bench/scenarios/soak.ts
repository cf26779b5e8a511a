/**
 * soak: the mixed load of issue 18 — 10 agents, each looping publish → call a neighbour →
 * `state.set` on 500 rotating keys — for a fixed time (3 minutes; quick: 20 s), twice:
 *
 * on the real `partykit dev`, sampling at the start, middle and end the room's JS heap after a
 * full GC (`room.heap()`, through the dev server's inspector: a heap snapshot, which pauses the
 * room for a second or two) and the room process's RSS, on a server of its own.
 *
 * `room_heap_growth_mb` is end minus middle: after the warm-up, memory should follow the
 * activity, not the history. No baseline: the figure is an absolute budget (a Durable Object
 * has about 128 MB).
 */
import type { Team } from "../../client/node.ts";
import { connect } from "../../client/node.ts";
import { type Metric, range, rssMb, type Scenario, sleep, startServer, stopServer } from "../lib.ts";

const AGENTS = 10;
const KEYS = 500;

/** Runs the mixed load on `agents` until `stop()` returns true; resolves with the loops done. */
async function mixedLoad(agents: Team[], stop: () => boolean): Promise<number> {
  for (const a of agents) a.handle("echo", (input) => input);
  await Promise.all(agents.map((a) => a.state("soak").ready));
  await sleep(500);
  let ops = 0;
  await Promise.all(
    agents.map(async (a, i) => {
      const ns = a.state("soak");
      for (let k = 0; !stop(); k++) {
        await a.publish("soak.tick", { i, k });
        await a.call(`soak-${(i + 1) % AGENTS}`, "echo", { k });
        ns.set(`k${(i * 50 + k) % KEYS}`, { v: k, by: i });
        ops++;
      }
    }),
  );
  return ops;
}

type Sample = { heap: number; rss: number };

/** Samples `measure` at the start, middle and end of `ms` of load. */
async function underLoad(
  agents: Team[],
  ms: number,
  measure: () => Promise<Sample>,
): Promise<{ start: Sample; middle: Sample; end: Sample; ops: number }> {
  let done = false;
  const load = mixedLoad(agents, () => done);
  await sleep(2000);
  const start = await measure();
  await sleep(ms / 2);
  const middle = await measure();
  await sleep(ms / 2);
  const end = await measure();
  done = true;
  return { start, middle, end, ops: await load };
}

export const soak: Scenario = {
  name: "soak",
  steps: () => 1,
  async run(ctx) {
    const ms = ctx.options.quick ? 20_000 : 180_000;
    // A server of its own: the heap is the worker isolate's, which holds every room the
    // server has loaded; here that is this room alone, and the snapshots stay small.
    const server = await startServer();
    const team = `soak-${ctx.tag}`;
    const real: Team[] = [];
    let soaked: Awaited<ReturnType<typeof underLoad>>;
    try {
      real.push(
        ...(await Promise.all(
          range(AGENTS).map((i) =>
            connect({
              host: server.host,
              team,
              agent: `soak-${i}`,
              role: "bench",
              token: () => server.token(`soak-${i}`, "bench", { team }),
            }),
          ),
        )),
      );
      soaked = await underLoad(real, ms, async () => ({
        heap: await server.heap(),
        rss: rssMb(server.workerd()),
      }));
    } finally {
      await Promise.all(real.map((a) => a.close()));
      await stopServer(server);
    }
    const { start, middle, end } = soaked;
    ctx.step(
      `heap ${start.heap.toFixed(0)} → ${middle.heap.toFixed(0)} → ${end.heap.toFixed(0)} MB, RSS ${start.rss.toFixed(0)} → ${middle.rss.toFixed(0)} → ${end.rss.toFixed(0)} MB`,
    );

    const s = ms / 1000;
    const note = `${soaked.ops.toLocaleString("en-US")} loops in ${s} s, real partykit dev`;
    const heapNote = `${note}, JS heap after GC`;
    const one = (name: string, unit: string, value: number, text: string): Metric => ({
      name,
      unit,
      runs: [value],
      note: text,
    });
    return [
      one("room_heap_growth_mb", "MB", end.heap - middle.heap, `${heapNote}: end minus middle`),
      one("room_heap_start", "MB", start.heap, heapNote),
      one("room_heap_middle", "MB", middle.heap, heapNote),
      one("room_heap_end", "MB", end.heap, heapNote),
      one("room_rss_growth_mb", "MB", end.rss - middle.rss, `${note}: end minus middle`),
      one("room_rss_start", "MB", start.rss, note),
      one("room_rss_middle", "MB", middle.rss, note),
      one("room_rss_end", "MB", end.rss, note),
      one("loops_per_s", "1/s", soaked.ops / s, note),
    ];
  },
};
