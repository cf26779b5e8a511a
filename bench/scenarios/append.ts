/**
 * append: what one more event costs as the stream grows. The shared history stream is
 * filled to 10k, 100k and 1M events (quick: 10k, 100k); at each size an agent publishes
 * 2,000 more as 20 sequential `publishBatch` calls of 100, and we report µs per event.
 * Flat is the goal: the live window keeps the log document bounded by archiving whole
 * segments, so an append should not care how long the history is.
 */
import type { Team } from "../../client/node.ts";
import { connect } from "../../client/node.ts";
import { eventData, type Metric, range, type Scenario, sleep, withCpu, within } from "../lib.ts";

const EVENTS = 2000;
const BATCH = 100;

const label = (size: number) => (size >= 1_000_000 ? `${size / 1_000_000}m` : `${size / 1000}k`);

export const appendSizes = (quick: boolean) => (quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000]);

export const append: Scenario = {
  name: "append",
  steps: (o) => appendSizes(o.quick).length * (o.runs + 1),
  async run(ctx) {
    const { quick, runs } = ctx.options;
    const history = await ctx.history();
    const sizes = appendSizes(quick);
    const perEvent = new Map<number, number[]>();
    const roomCpu = new Map<number, number[]>();
    let agent: Team | null = null;
    try {
      agent = await connect({
        host: history.server.host,
        team: history.team,
        agent: "appender",
        role: "bench",
        token: () => history.server.token("appender", "bench", { team: history.team }),
      });
      const writer = agent;
      let n = 0;
      const appendBatches = async () => {
        for (let b = 0; b < EVENTS / BATCH; b++) {
          await within(
            "append batch",
            writer.publishBatch(range(BATCH).map(() => ({ type: "bench.appended", data: eventData(n++) }))),
            60_000,
          );
        }
      };
      let warm = false;
      for (const size of sizes) {
        await history.fillTo(size, (s) => ctx.status(`filling to ${s.toLocaleString("en-US")} events`));
        // Let archiving of the fill settle before measuring.
        await sleep(1000);
        if (!warm) {
          // One unmeasured round warms up both ends (JIT, the first archived segments).
          await appendBatches();
          warm = true;
        }
        ctx.step(`filled to ${label(size)}`);
        for (let run = 0; run < runs; run++) {
          const measured = await withCpu(history.server, async () => {
            const t0 = performance.now();
            await appendBatches();
            return ((performance.now() - t0) / EVENTS) * 1000;
          });
          perEvent.set(size, [...(perEvent.get(size) ?? []), measured.result]);
          roomCpu.set(size, [...(roomCpu.get(size) ?? []), (measured.roomCpuS / EVENTS) * 1e6]);
          ctx.step(`${label(size)} run ${run + 1}/${runs}`);
        }
      }
    } finally {
      await agent?.close();
    }
    const first = sizes[0] as number;
    const last = sizes.at(-1) as number;
    const metrics: Metric[] = sizes.map((size) => ({
      name: `us_per_event_${label(size)}`,
      unit: "µs",
      runs: perEvent.get(size) ?? [],
      ...(size === first
        ? { note: `${EVENTS} events as ${EVENTS / BATCH} sequential batches of ${BATCH}` }
        : { baselineRuns: perEvent.get(first) ?? [], baselineName: `at ${label(first)}` }),
    }));
    for (const size of sizes) {
      metrics.push({
        name: `room_cpu_per_event_${label(size)}`,
        unit: "µs",
        runs: roomCpu.get(size) ?? [],
        ...(size === first
          ? { note: "workerd CPU" }
          : { baselineRuns: roomCpu.get(first) ?? [], baselineName: `at ${label(first)}` }),
      });
    }
    const firstRuns = perEvent.get(first) ?? [];
    const lastRuns = perEvent.get(last) ?? [];
    metrics.push({
      name: `ratio_${label(last)}_${label(first)}`,
      unit: "x",
      runs: lastRuns.map((v, i) => v / (firstRuns[i] ?? Number.NaN)),
      note: "per-event cost at the largest size over the smallest (1.0 = flat)",
    });
    return metrics;
  },
};
