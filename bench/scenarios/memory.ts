/**
 * memory: resident memory of the room process (workerd) with a long history and many
 * connected agents (1M events and 200 agents; quick: 50k events and 50 agents). The room
 * is restarted first, so the figure is what a cold room grows to, not what the fill left
 * behind. Baseline: the same process idle after the restart, before anyone connects. Both
 * the process's RSS and the worker's JS heap after a full GC are reported.
 *
 * With `BENCH_MEMORY_DIAG=1`, finer figures too: the RSS once the subscribers are synced and
 * before the publish, and after each step what V8 holds from the system without a GC
 * (`room_v8_committed*`: the part of the RSS growth that is heap, live or not yet given back).
 * Off by default: reading them moves the figures they sit between by a few MB.
 */
import type { Team } from "../../client/node.ts";
import { connect } from "../../client/node.ts";
import { type Metric, range, rssMb, type Scenario, sleep, v8HeapMb, within } from "../lib.ts";

const SUBSCRIBERS = 10;
const SAMPLES = 5;
const DIAG = process.env.BENCH_MEMORY_DIAG === "1";

export const memory: Scenario = {
  name: "memory",
  steps: () => 4,
  async run(ctx) {
    const { quick } = ctx.options;
    const EVENTS = quick ? 50_000 : 1_000_000;
    const AGENTS = quick ? 50 : 200;
    const history = await ctx.history();
    await history.fillTo(EVENTS, (s) => ctx.status(`filling to ${s.toLocaleString("en-US")} events`));
    ctx.step(`history of ${history.size.toLocaleString("en-US")} events`);

    history.disconnect();
    await history.server.kill();
    await history.server.restart();
    await sleep(1000);
    const sample = async () => {
      const values: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        values.push(rssMb(history.server.workerd()));
        await sleep(200);
      }
      return values;
    };
    const idle = await sample();
    // Read after each step's RSS samples (no heap snapshot: it would grow the RSS by itself).
    const v8 = async () => (DIAG ? (await v8HeapMb(history.server)).committed : Number.NaN);
    const idleV8 = await v8();
    ctx.step("idle room sampled");

    const agents: Team[] = [];
    try {
      // Connect in groups, so the room is not asked to admit everyone in one instant.
      for (let i = 0; i < AGENTS; i += 25) {
        const group = await Promise.all(
          range(Math.min(25, AGENTS - i)).map((k) =>
            connect({
              host: history.server.host,
              team: history.team,
              agent: `member-${i + k}`,
              role: "bench",
              token: () => history.server.token(`member-${i + k}`, "bench", { team: history.team }),
            }),
          ),
        );
        agents.push(...group);
        ctx.status(`${agents.length}/${AGENTS} agents connected`);
      }
      await sleep(1000);
      // Presence alone (sessions, roster), before any document or stream is loaded.
      const present = await sample();
      const presentV8 = await v8();
      // Some agents follow the stream (the room loads its log and dedupe window), and one
      // publishes; the rest are merely present.
      await within(
        "subscribers ready",
        Promise.all(agents.slice(0, SUBSCRIBERS).map((a) => a.subscribe(">", () => {}).ready)),
        120_000,
      );
      // The stream's window is loaded and synced to the subscribers; nothing published yet.
      const subscribed: number[] = [];
      if (DIAG) {
        await sleep(1000);
        subscribed.push(...(await sample()));
      }
      const subscribedV8 = await v8();
      await within("publish", (agents[0] as Team).publish("bench.memory", { n: 1 }), 60_000);
      ctx.step(`${AGENTS} agents connected`);
      await sleep(1000);
      const loaded = await sample();
      const loadedV8 = await v8();
      // The JS heap after a full GC (through the dev server's inspector): what the room holds,
      // apart from workerd's own memory, which is most of the RSS. Taken only after every RSS
      // sample: a heap snapshot grows workerd's RSS by itself (87 → 125 MB on an idle room,
      // part of it kept), which is the bench's doing, not the room's. The idle heap comes from
      // a second restart at the end, for the same reason.
      const loadedHeap = await history.server.heap();
      ctx.step("loaded room sampled");
      await Promise.all(agents.splice(0).map((a) => a.close()));
      await history.server.kill();
      await history.server.restart();
      await sleep(1000);
      const idleHeap = await history.server.heap();
      const note = `${AGENTS} agents (${SUBSCRIBERS} subscribed), ${history.size.toLocaleString("en-US")} events`;
      const metrics: Metric[] = [
        { name: "room_rss", unit: "MB", runs: loaded, baselineRuns: idle, baselineName: "idle room", note },
        { name: "room_rss_idle", unit: "MB", runs: idle, note: "after restart, nobody connected" },
        {
          name: "room_heap",
          unit: "MB",
          runs: [loadedHeap],
          baselineRuns: [idleHeap],
          baselineName: "idle room",
          note: `JS heap after a full GC; ${note}`,
        },
        {
          name: "room_rss_present",
          unit: "MB",
          runs: present,
          baselineRuns: idle,
          baselineName: "idle room",
          note: `${AGENTS} agents connected, before anyone subscribes or publishes`,
        },
      ];
      if (!DIAG) return metrics;
      metrics.push(
        {
          name: "room_rss_subscribed",
          unit: "MB",
          runs: subscribed,
          baselineRuns: idle,
          baselineName: "idle room",
          note: `${AGENTS} agents, ${SUBSCRIBERS} of them subscribed, before the publish`,
        },
        {
          name: "room_v8_committed_present",
          unit: "MB",
          runs: [presentV8],
          baselineRuns: [idleV8],
          baselineName: "idle room",
          note: `V8 heap held from the system (no GC), ${AGENTS} agents connected`,
        },
        {
          name: "room_v8_committed_subscribed",
          unit: "MB",
          runs: [subscribedV8],
          baselineRuns: [idleV8],
          baselineName: "idle room",
          note: `V8 heap held from the system (no GC), ${SUBSCRIBERS} subscribed`,
        },
        {
          name: "room_v8_committed",
          unit: "MB",
          runs: [loadedV8],
          baselineRuns: [idleV8],
          baselineName: "idle room",
          note: `V8 heap held from the system (no GC); ${note}`,
        },
      );
      return metrics;
    } finally {
      await Promise.all(agents.map((a) => a.close()));
    }
  },
};
