/**
 * fanout: one publisher, ten subscribers. Sustained throughput (publish N events as fast as
 * each system's API allows, time until all ten subscribers hold all N) and latency at a
 * paced 1,000 events/s (events carry their send time; one process, one clock).
 *
 * - crosstalk: `team.publish` (concurrent calls travel as one frame per tick), subscribers
 *   on `team.subscribe(">")`.
 * - relay: one JSON frame per event, broadcast by the relay party; the baseline. The same
 *   relay hibernating (as the room must) is a second reference, `_vs_hibernating_relay` keys,
 *   and that relay storing each event before it sends it (`relay-durable.ts`; the room must
 *   too: a subscriber never sees an event a crash could take back) a third, `_vs_durable_relay`.
 * - y-partykit: one `push` (one transaction, one update) per event into a flat Y.Array
 *   `events`; subscribers observe it and read the new tail.
 *
 * Each run starts from fresh rooms; the paced phase follows the throughput phase on the
 * same rooms, so it sees a stream of N events (a full live window at N = 10,000). The
 * systems take turns in an order rotated from run to run.
 */
import type { Team } from "../../client/node.ts";
import {
  type BenchServer,
  eventData,
  type Metric,
  percentile,
  type RawSocket,
  range,
  rawSocket,
  type Scenario,
  sleep,
  storedLike,
  waitFor,
  withCpu,
  within,
  type YClient,
  yClient,
} from "../lib.ts";

const SUBSCRIBERS = 10;
const RATE = 1000;

type System = {
  readonly name: string;
  /** Events each subscriber has received. */
  readonly counts: number[];
  /** Send-to-receive times (ms) while `timing` is on. */
  latencies: number[];
  timing: boolean;
  /** Publishes event `n`, stamped with send time `t`. */
  send(n: number, t: number): void;
  /** Resolves when the publisher's sends are done on its side (acks, buffers). */
  flushed(): Promise<void>;
  close(): Promise<void>;
};

function received(system: System, t: number): void {
  if (system.timing) system.latencies.push(performance.now() - t);
}

async function crosstalkSystem(server: BenchServer, team: string): Promise<System> {
  const publisher = await server.agent("publisher", { team });
  const subscribers: Team[] = await Promise.all(range(SUBSCRIBERS).map((i) => server.agent(`sub-${i}`, { team })));
  let acks: Promise<unknown>[] = [];
  const system: System = {
    name: "crosstalk",
    counts: subscribers.map(() => 0),
    latencies: [],
    timing: false,
    send(n, t) {
      acks.push(publisher.publish("bench.fanout", { ...eventData(n), t }));
    },
    async flushed() {
      const pending = acks;
      acks = [];
      await Promise.all(pending);
    },
    async close() {
      await Promise.all([publisher, ...subscribers].map((a) => a.close()));
    },
  };
  await Promise.all(
    subscribers.map(
      (s, i) =>
        s.subscribe(">", (e) => {
          system.counts[i] = (system.counts[i] ?? 0) + 1;
          received(system, (e.data as { t: number }).t);
        }).ready,
    ),
  );
  return system;
}

async function relaySystem(server: BenchServer, room: string, party = "relay", name = "relay"): Promise<System> {
  const path = (id: string) => `/parties/${party}/${room}?_pk=${id}`;
  const publisher = await rawSocket(server, path("publisher"));
  const subscribers: RawSocket[] = await Promise.all(
    range(SUBSCRIBERS).map((i) => rawSocket(server, path(`sub-${i}`))),
  );
  const system: System = {
    name,
    counts: subscribers.map(() => 0),
    latencies: [],
    timing: false,
    send(n, t) {
      publisher.send({ to: "*", ...storedLike(n, { ...eventData(n), t }) });
    },
    async flushed() {
      await waitFor("relay publisher buffer drained", () => publisher.ws.bufferedAmount === 0, { timeoutMs: 60_000 });
    },
    async close() {
      for (const s of [publisher, ...subscribers]) s.close();
    },
  };
  for (const [i, s] of subscribers.entries()) {
    s.onMessage((text) => {
      system.counts[i] = (system.counts[i] ?? 0) + 1;
      received(system, (JSON.parse(text) as { data: { t: number } }).data.t);
    });
  }
  return system;
}

async function ypartySystem(server: BenchServer, room: string): Promise<System> {
  const publisher = yClient(server, room);
  const subscribers: YClient[] = range(SUBSCRIBERS).map(() => yClient(server, room));
  await Promise.all([publisher, ...subscribers].map((c) => c.synced));
  const events = publisher.doc.getArray<ReturnType<typeof storedLike>>("events");
  const system: System = {
    name: "y-partykit",
    counts: subscribers.map(() => 0),
    latencies: [],
    timing: false,
    send(n, t) {
      events.push([storedLike(n, { ...eventData(n), t })]);
    },
    async flushed() {
      const ws = publisher.provider.ws as unknown as { bufferedAmount: number } | null;
      await waitFor("y-partykit publisher buffer drained", () => (ws?.bufferedAmount ?? 0) === 0, {
        timeoutMs: 60_000,
      });
    },
    async close() {
      for (const c of [publisher, ...subscribers]) c.destroy();
    },
  };
  subscribers.forEach((s, i) => {
    const array = s.doc.getArray<ReturnType<typeof storedLike>>("events");
    // Push-only array: the new events are the tail. `get` uses Yjs' search markers, while
    // `event.changes` would walk the whole array on every update.
    let seen = array.length;
    array.observe(() => {
      const length = array.length;
      for (let k = seen; k < length; k++) {
        system.counts[i] = (system.counts[i] ?? 0) + 1;
        received(system, (array.get(k).data as { t: number }).t);
      }
      seen = length;
    });
  });
  return system;
}

/** Sends `n` events as fast as the system takes them; events per second delivered to all. */
async function throughput(server: BenchServer, system: System, n: number) {
  system.counts.fill(0);
  return withCpu(server, async () => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) system.send(i, t0);
    await within(`${system.name} publish`, system.flushed(), 120_000);
    await waitFor(`${system.name}: all subscribers have ${n} events`, () => system.counts.every((c) => c >= n), {
      timeoutMs: 180_000,
    });
    return n / ((performance.now() - t0) / 1000);
  });
}

/**
 * Sends `warm + n` events at `RATE` per second, one stream without a pause; the latencies of
 * every delivery of the last `n`. The first `warm` are not timed: right after the burst of the
 * throughput run, every system is still busy with it for a while (garbage collection; the
 * room compacts the burst's records), which is not the latency of a steady stream.
 */
async function paced(system: System, n: number, warm: number): Promise<number[]> {
  const total = warm + n;
  system.counts.fill(0);
  system.latencies = [];
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    if (performance.now() - start > (total / RATE) * 1000 + 60_000) throw new Error("paced publishing fell behind");
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * RATE) + 1);
    while (sent < due) {
      // Timing starts with the first timed send: deliveries of warm-up events after it count
      // too, their send times being earlier (a warm-up left behind shows as latency).
      if (sent === warm) system.timing = true;
      system.send(sent++, performance.now());
    }
    await sleep(1);
  }
  await within(`${system.name} publish`, system.flushed(), 60_000);
  await waitFor(`${system.name}: paced events delivered`, () => system.counts.every((c) => c >= total), {
    timeoutMs: 60_000,
  });
  system.timing = false;
  return system.latencies;
}

const hibernatingRelaySystem = (server: BenchServer, room: string) =>
  relaySystem(server, room, "relayhib", "hibernating relay");
/** The hibernating relay storing each event before it sends it (`relay-durable.ts`). */
const durableRelaySystem = (server: BenchServer, room: string) =>
  relaySystem(server, room, "relaydurable", "durable relay");

const MAKERS = [crosstalkSystem, relaySystem, ypartySystem, hibernatingRelaySystem, durableRelaySystem];
const BASELINES = ["", "relay", "y-partykit", "hibernating relay", "durable relay"];
const SUFFIXES = ["", "", "_vs_ypartykit", "_vs_hibernating_relay", "_vs_durable_relay"];

/**
 * Runs `measure` on a freshly connected system of each kind, then closes it; the kinds in
 * turn from `first`, so that over the runs none always comes right after the same neighbour.
 */
async function onFresh<T>(
  server: BenchServer,
  room: string,
  measure: (system: System, kind: number) => Promise<T>,
  first = 0,
): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < MAKERS.length; i++) {
    const kind = (first + i) % MAKERS.length;
    const make = MAKERS[kind] as (typeof MAKERS)[number];
    const system = await make(server, room);
    try {
      out.push(await measure(system, kind));
    } finally {
      await system.close();
    }
  }
  return out;
}

export const fanout: Scenario = {
  name: "fanout",
  steps: (o) => o.runs * MAKERS.length * 2 + 1,
  async run(ctx) {
    const { quick, runs } = ctx.options;
    const N = quick ? 2000 : 10_000;
    // 50,000 timed deliveries per system and run: its p99 is set by the worst 500, so by a
    // system's recurring stalls rather than by one passing hiccup of a shared machine.
    const PACED = quick ? 1000 : 5000;
    const WARM = quick ? 100 : 500;
    const server = await ctx.server();
    // Each run uses fresh rooms, and measures latency right after throughput, on the same
    // rooms: the stream then holds a full live window (its steady state) and the flat
    // Y.Array holds N events. Fresh per run, because a flat Y.Array slows down as it grows
    // (Yjs merges one-item pushes into one ever longer item, copying it each time), which
    // would make the baseline depend on how many runs came before.
    await onFresh(server, `fanout-${ctx.tag}-warm`, (s) => throughput(server, s, 300));
    ctx.step("warmed up");

    const perS = MAKERS.map(() => [] as number[]);
    const roomUs = MAKERS.map(() => [] as number[]);
    const clientUs = MAKERS.map(() => [] as number[]);
    const p50 = MAKERS.map(() => [] as number[]);
    const p99 = MAKERS.map(() => [] as number[]);
    for (let run = 0; run < runs; run++) {
      const onRun = async (s: System, k: number) => {
        const t = await throughput(server, s, N);
        perS[k]?.push(t.result);
        roomUs[k]?.push((t.roomCpuS / N) * 1e6);
        clientUs[k]?.push((t.benchCpuS / N) * 1e6);
        ctx.step(`${s.name} throughput ${run + 1}/${runs}`);
        const latencies = await paced(s, PACED, WARM);
        p50[k]?.push(percentile(latencies, 50));
        p99[k]?.push(percentile(latencies, 99));
        ctx.step(`${s.name} paced ${run + 1}/${runs}`);
      };
      await onFresh(server, `fanout-${ctx.tag}-${run}`, onRun, run);
    }
    const pair = (name: string, unit: string, values: number[][], note?: string): Metric[] =>
      [1, 2, 3, 4].map((b) => ({
        name: `${name}${SUFFIXES[b]}`,
        unit,
        runs: values[0] ?? [],
        baselineRuns: values[b] ?? [],
        baselineName: BASELINES[b] ?? "",
        ...(note && b === 1 ? { note } : {}),
      }));
    return [
      ...pair("events_per_s", "events/s", perS, `${N} events to each of ${SUBSCRIBERS} subscribers, fresh rooms`),
      ...pair(
        "latency_p50",
        "ms",
        p50,
        `paced ${RATE}/s, ${PACED} events x ${SUBSCRIBERS} subs after ${WARM} untimed, after the N above`,
      ),
      ...pair("latency_p99", "ms", p99),
      ...pair("room_cpu_per_event", "µs", roomUs, "workerd CPU per event (all deliveries), throughput run"),
      ...pair("client_cpu_per_event", "µs", clientUs, "bench process CPU (publisher + 10 subscribers)"),
    ];
  },
};
