/**
 * soak: the mixed load of issue 18 — 10 agents, each looping publish → call a neighbour →
 * `state.set` on 500 rotating keys — for a fixed time (3 minutes; quick: 20 s), twice:
 *
 * - on the real `partykit dev`: the room process's RSS at the start, middle and end;
 * - in process (`createTestRoom`): the JS heap after a forced GC at the same points, less what
 *   the in-memory storage holds (a real room keeps that on disk). The heap holds the ten
 *   agents' copies too, so it bounds the room's from above. workerd's own heap is not reachable
 *   from here (its inspector does not answer `Runtime.getHeapUsage` under `partykit dev`).
 *
 * `room_heap_growth_mb` is end minus middle: after the warm-up, memory should follow the
 * activity, not the history. No baseline: the figure is an absolute budget (a Durable Object
 * has about 128 MB).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Team } from "../../client/node.ts";
import { connect } from "../../client/node.ts";
import { createTestRoom } from "../../testing/index.ts";
import { type Metric, range, rssMb, type Scenario, sleep } from "../lib.ts";

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

/** Samples `measure` at the start, middle and end of `ms` of load. */
async function underLoad(
  agents: Team[],
  ms: number,
  measure: () => number,
): Promise<{ start: number; middle: number; end: number; ops: number }> {
  let done = false;
  const load = mixedLoad(agents, () => done);
  await sleep(2000);
  const start = measure();
  await sleep(ms / 2);
  const middle = measure();
  await sleep(ms / 2);
  const end = measure();
  done = true;
  return { start, middle, end, ops: await load };
}

export const soak: Scenario = {
  name: "soak",
  steps: () => 2,
  async run(ctx) {
    const ms = ctx.options.quick ? 20_000 : 180_000;
    const server = await ctx.server();
    const team = `soak-${ctx.tag}`;
    const real = await Promise.all(
      range(AGENTS).map((i) =>
        connect({
          host: server.host,
          team,
          agent: `soak-${i}`,
          role: "bench",
          token: () => server.token(`soak-${i}`, "bench", { team }),
        }),
      ),
    );
    let rss: Awaited<ReturnType<typeof underLoad>>;
    try {
      rss = await underLoad(real, ms, () => rssMb(server.workerd()));
    } finally {
      await Promise.all(real.map((a) => a.close()));
    }
    ctx.step(`real room: RSS ${rss.start.toFixed(0)} → ${rss.middle.toFixed(0)} → ${rss.end.toFixed(0)} MB`);

    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    await using room = createTestRoom();
    const local = await Promise.all(range(AGENTS).map((i) => room.agent(`soak-${i}`, { team })));
    const stored = () => {
      let n = 0;
      for (const v of room.storage(team).data.values()) {
        if (typeof v === "string") n += v.length;
        else if (!(v instanceof Uint8Array)) n += JSON.stringify(v).length;
      }
      return n;
    };
    const heap = await underLoad(local, ms, () => {
      gc();
      gc();
      return (process.memoryUsage().heapUsed - stored()) / 1024 / 1024;
    });
    await Promise.all(local.map((a) => a.close()));
    ctx.step(`in process: heap ${heap.start.toFixed(0)} → ${heap.middle.toFixed(0)} → ${heap.end.toFixed(0)} MB`);

    const s = ms / 1000;
    const realNote = `${rss.ops.toLocaleString("en-US")} loops in ${s} s, real partykit dev`;
    const heapNote = `${heap.ops.toLocaleString("en-US")} loops in ${s} s, in process, after GC`;
    const one = (name: string, unit: string, value: number, note: string): Metric => ({
      name,
      unit,
      runs: [value],
      note,
    });
    return [
      one("room_heap_growth_mb", "MB", heap.end - heap.middle, `${heapNote}: end minus middle`),
      one("room_heap_start", "MB", heap.start, heapNote),
      one("room_heap_middle", "MB", heap.middle, heapNote),
      one("room_heap_end", "MB", heap.end, heapNote),
      one("room_rss_growth_mb", "MB", rss.end - rss.middle, `${realNote}: end minus middle`),
      one("room_rss_start", "MB", rss.start, realNote),
      one("room_rss_middle", "MB", rss.middle, realNote),
      one("room_rss_end", "MB", rss.end, realNote),
      one("loops_per_s", "1/s", rss.ops / s, realNote),
    ];
  },
};
