/**
 * Fan-out in process, for `--cpu-prof`: the room (`createTestRoom`, in-memory sockets and
 * storage) with one publisher and ten subscribers in this one process, `N` events published
 * in one burst per run, as the `fanout` scenario does. The profile holds both sides; group
 * its self time by file (party/ vs client/) to split room from client:
 *
 *   node --import tsx --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile-fanout.ts
 *
 * Prints CPU µs per event (room and clients together). `N` (default 10000), `RUNS` (5).
 *
 * `PACED=1`: the scenario's latency phase instead, against a real `partykit dev` (the room
 * in workerd, only the agents here): a burst of `N`, then `PACED_N` (5500) events at
 * 1,000/s; prints the p50/p99 of the last 5,000 and this process's GC pauses meanwhile
 * (`performance` gc entries), to tell client pauses from room stalls. Each latency is also
 * split at the event's room timestamp (`ts`, taken when the room appended it; one machine,
 * one clock): send → append (the publisher, the socket, a room busy with something else) and
 * append → delivery (commit, broadcast, the subscribers).
 *
 * `ROOM_PROFILE=<file>` (with `PACED=1`): a V8 CPU profile of the last run's room, sampled
 * every `ROOM_INTERVAL` µs (250), is written to the file, for DevTools (the bundle beside it,
 * `<file>.js`). `partykit dev` then runs on wrangler's newer workerd (`MINIFLARE_WORKERD_PATH`),
 * as `profile-rpc.ts` does: partykit's own cannot be CPU-profiled (`testing/inspector.ts`).
 */
import { PerformanceObserver } from "node:perf_hooks";
import type { Team } from "../client/node.ts";
import { createTestRoom } from "../testing/index.ts";
import { percentile, sleep, startServer, stopServer, useProfilableWorkerd, writeRoomProfile } from "./lib.ts";

const N = Number(process.env.N ?? 10_000);
const RUNS = Number(process.env.RUNS ?? 5);
const SUBS = 10;
const data = (n: number) => ({ n, deal: `D-${n % 997}`, amount: 1234.5, note: "benchmark event", t: 0 });

type Host = { agent(name: string, options: { team: string }): Promise<Team> };

async function run(host: Host, i: number): Promise<{ us: number; ms: number }> {
  const team = `profile-${i}`;
  const publisher = await host.agent("publisher", { team });
  const subs = await Promise.all(Array.from({ length: SUBS }, (_, k) => host.agent(`sub-${k}`, { team })));
  const counts = subs.map(() => 0);
  let done: () => void = () => {};
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  await Promise.all(
    subs.map(
      (s, k) =>
        s.subscribe(">", () => {
          counts[k] = (counts[k] ?? 0) + 1;
          if (counts.every((c) => c >= N)) done();
        }).ready,
    ),
  );
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const acks: Promise<unknown>[] = [];
  for (let n = 0; n < N; n++) acks.push(publisher.publish("bench.fanout", data(n)));
  await Promise.all([...acks, all]);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await Promise.all([publisher, ...subs].map((a) => a.close()));
  return { us: (cpu.user + cpu.system) / N, ms };
}

async function paced(host: Host, i: number): Promise<void> {
  const total = Number(process.env.PACED_N ?? 5500);
  const warm = total - 5000;
  const team = `paced-${i}`;
  const publisher = await host.agent("publisher", { team });
  const subs = await Promise.all(Array.from({ length: SUBS }, (_, k) => host.agent(`sub-${k}`, { team })));
  let counts = subs.map(() => 0);
  let timing = false;
  const latencies: number[] = [];
  const sentAt: number[] = [];
  /** Send to room append, per delivery (ms). */
  const upstream: number[] = [];
  await Promise.all(
    subs.map(
      (s, k) =>
        s.subscribe(">", (e) => {
          counts[k] = (counts[k] ?? 0) + 1;
          if (!timing) return;
          const t = (e.data as { t: number }).t;
          latencies.push(performance.now() - t);
          sentAt.push(t);
          upstream.push(e.ts - performance.timeOrigin - t);
        }).ready,
    ),
  );
  const acks: Promise<unknown>[] = [];
  for (let n = 0; n < N; n++) acks.push(publisher.publish("bench.fanout", { ...data(n), t: 0 }));
  await Promise.all(acks);
  while (!counts.every((c) => c >= N)) await sleep(5);
  counts = subs.map(() => 0);
  const pauses: { kind: number; ms: number }[] = [];
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (timing)
        pauses.push({ kind: (e as PerformanceEntry & { detail: { kind: number } }).detail.kind, ms: e.duration });
  });
  gc.observe({ entryTypes: ["gc"] });
  const start = performance.now();
  let sent = 0;
  const cpu0 = process.cpuUsage();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * 1000) + 1);
    while (sent < due) {
      if (sent === warm) timing = true;
      acks.push(publisher.publish("bench.fanout", { ...data(sent++), t: performance.now() }));
    }
    await sleep(1);
  }
  await Promise.all(acks);
  while (!counts.every((c) => c >= total)) await sleep(5);
  const cpu = process.cpuUsage(cpu0);
  timing = false;
  gc.disconnect();
  const kinds = new Map<number, number[]>();
  for (const p of pauses) kinds.set(p.kind, [...(kinds.get(p.kind) ?? []), p.ms]);
  const gcText = [...kinds]
    .map(
      ([k, ms]) =>
        `kind ${k}: ${ms.length} × (sum ${ms.reduce((a, b) => a + b, 0).toFixed(0)}, max ${Math.max(...ms).toFixed(1)} ms)`,
    )
    .join("; ");
  const downstream = latencies.map((ms, k) => ms - (upstream[k] as number));
  process.stdout.write(
    `  split at the room's append: send → append p50 ${percentile(upstream, 50).toFixed(2)} p99 ${percentile(upstream, 99).toFixed(2)}; ` +
      `append → delivery p50 ${percentile(downstream, 50).toFixed(2)} p99 ${percentile(downstream, 99).toFixed(2)} ms\n`,
  );
  process.stdout.write(
    `paced ${i}: p50 ${percentile(latencies, 50).toFixed(2)} p99 ${percentile(latencies, 99).toFixed(2)} max ${Math.max(...latencies).toFixed(1)} ms; ` +
      `client CPU ${((cpu.user + cpu.system) / total).toFixed(0)} µs/event; heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MB; GC ${gcText}\n`,
  );
  // Where the slow deliveries were: 100 ms buckets of send time holding more than a tenth of a
  // percent of the deliveries over the p99 (a stall in the room delays every subscriber's copy).
  const p99 = percentile(latencies, 99);
  const buckets = new Map<number, { n: number; max: number }>();
  latencies.forEach((ms, k) => {
    if (ms < p99) return;
    const b = Math.floor(((sentAt[k] as number) - start) / 100) * 100;
    const x = buckets.get(b) ?? { n: 0, max: 0 };
    x.n++;
    x.max = Math.max(x.max, ms);
    buckets.set(b, x);
  });
  const slow = [...buckets].filter(([, x]) => x.n >= latencies.length / 1000).sort((a, b) => a[0] - b[0]);
  process.stdout.write(
    `  over p99, by send time: ${slow.map(([b, x]) => `${b}ms:${x.n}(max ${x.max.toFixed(0)})`).join(" ")}\n`,
  );
  await Promise.all([publisher, ...subs].map((a) => a.close()));
}

if (process.env.PACED) {
  const file = process.env.ROOM_PROFILE;
  if (file) useProfilableWorkerd();
  const server = await startServer();
  try {
    for (let i = 0; i < RUNS - (file ? 1 : 0); i++) await paced(server, i);
    if (file) {
      const interval = Number(process.env.ROOM_INTERVAL ?? 250);
      const samples = await writeRoomProfile(server, file, interval, () => paced(server, RUNS - 1));
      process.stdout.write(`room CPU profile (${samples} samples): ${file}\n`);
    }
  } finally {
    await stopServer(server);
  }
} else {
  const room = createTestRoom();
  await run(room, -1);
  for (let i = 0; i < RUNS; i++) {
    const r = await run(room, i);
    process.stdout.write(`run ${i}: ${r.us.toFixed(1)} µs CPU per event, ${r.ms.toFixed(0)} ms\n`);
  }
}

process.exit(0);
