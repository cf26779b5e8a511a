/**
 * offline: an agent with durable local storage (`connect({ persist })`, the Node file
 * storage with its default group commit) working while the room is unreachable (the kit's
 * fault proxy refuses its connections).
 *
 * - `local_publish_per_s`: offline `await publish` calls per second, one at a time (each
 *   durable on disk before it resolves), over the first 1,000 events; baseline: the same into
 *   memory (`MemoryStorage`).
 * - `flush_10k_ms`: then 9,000 more events in bursts of 10 concurrent publishes (10,000 events
 *   in 1,900 outbox entries); then the proxy lets the agent through. Measured from the room
 *   admitting it until its outbox is empty (every entry acknowledged). Baseline: the same
 *   agent with its outbox in memory, in the same run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, MemoryStorage, openFileStorage, type Team } from "../../client/node.ts";
import type { AgentStorage } from "../../client/storage.ts";
import { startFaultProxy } from "../../testing/fault-proxy.ts";
import { eventData, type Metric, type Scenario, waitFor } from "../lib.ts";

export const offline: Scenario = {
  name: "offline",
  steps: (o) => o.runs * 2,
  async run(ctx) {
    const { runs, quick } = ctx.options;
    const events = quick ? 2_000 : 10_000;
    const single = events / 10;
    const server = await ctx.server();
    const proxy = await startFaultProxy({ port: server.port });
    const flush: Record<"file" | "memory", number[]> = { file: [], memory: [] };
    const rate: Record<"file" | "memory", number[]> = { file: [], memory: [] };
    try {
      for (let run = 0; run < runs; run++) {
        // A/B interleaved: the file storage and the memory one take turns.
        for (const kind of run % 2 === 0 ? (["file", "memory"] as const) : (["memory", "file"] as const)) {
          const team = `offline-${ctx.tag}-${run}-${kind}`;
          const dir = mkdtempSync(join(tmpdir(), "crosstalk-bench-offline-"));
          const storage: AgentStorage = kind === "file" ? openFileStorage(dir) : new MemoryStorage();
          let agent: Team | null = null;
          try {
            proxy.mode = "refuse";
            agent = await connect({
              host: proxy.host,
              team,
              agent: "producer",
              role: "agent",
              token: await server.token("producer", "agent", { team }),
              persist: storage,
              waitForOnline: false,
              minReconnectDelayMs: 20,
              maxReconnectDelayMs: 50,
            });
            const started = performance.now();
            for (let i = 0; i < single; i++) await agent.publish("bench.offline", eventData(i));
            rate[kind].push(single / ((performance.now() - started) / 1000));
            for (let i = single; i < events; i += 10) {
              const burst = Array.from({ length: 10 }, (_, k) => agent?.publish("bench.offline", eventData(i + k)));
              await Promise.all(burst);
            }
            if (agent.pending().count !== events) throw new Error(`expected ${events} pending events`);

            let onlineAt = 0;
            const team_ = agent;
            team_.on("status", (s) => {
              if (s === "online" && !onlineAt) onlineAt = performance.now();
            });
            proxy.mode = "pass";
            await waitFor("outbox empty", () => onlineAt > 0 && team_.pending().count === 0, {
              timeoutMs: 120_000,
              intervalMs: 1,
            });
            flush[kind].push(performance.now() - onlineAt);
          } finally {
            await agent?.close();
            await storage.close();
            rmSync(dir, { recursive: true, force: true });
          }
          ctx.step(`${kind} ${run + 1}/${runs}`);
        }
      }
    } finally {
      await proxy.close();
    }
    const count = `${events.toLocaleString("en-US")} events`;
    return [
      {
        name: "flush_10k_ms",
        unit: "ms",
        runs: flush.file,
        baselineRuns: flush.memory,
        baselineName: "in-memory outbox",
        note: `${count} queued offline (${single.toLocaleString("en-US")} one at a time, the rest in bursts of 10); from admitted to an empty outbox`,
      },
      {
        name: "local_publish_per_s",
        unit: "events/s",
        runs: rate.file,
        baselineRuns: rate.memory,
        baselineName: "in-memory outbox",
        note: "offline, one await publish at a time, each durable on disk (one fdatasync each)",
      },
    ] satisfies Metric[];
  },
};
