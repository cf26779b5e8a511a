/**
 * Fan-out in process, for `--cpu-prof`: the room (`createTestRoom`, in-memory sockets and
 * storage) with one publisher and ten subscribers in this one process, `N` events published
 * in one burst per run, as the `fanout` scenario does. The profile holds both sides; group
 * its self time by file (party/ vs client/) to split room from client:
 *
 *   node --import tsx --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile-fanout.ts
 *
 * Prints CPU µs per event (room and clients together). `N` (default 10000), `RUNS` (5).
 */
import { createTestRoom } from "../testing/index.ts";

const N = Number(process.env.N ?? 10_000);
const RUNS = Number(process.env.RUNS ?? 5);
const SUBS = 10;
const room = createTestRoom();
const data = (n: number) => ({ n, deal: `D-${n % 997}`, amount: 1234.5, note: "benchmark event", t: 0 });

async function run(i: number): Promise<{ us: number; ms: number }> {
  const team = `profile-${i}`;
  const publisher = await room.agent("publisher", { team });
  const subs = await Promise.all(Array.from({ length: SUBS }, (_, k) => room.agent(`sub-${k}`, { team })));
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

await run(-1);
for (let i = 0; i < RUNS; i++) {
  const r = await run(i);
  process.stdout.write(`run ${i}: ${r.us.toFixed(1)} µs CPU per event, ${r.ms.toFixed(0)} ms\n`);
}

process.exit(0);
