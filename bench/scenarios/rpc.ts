/**
 * rpc: request/response between two agents through the room (`team.call` → the room →
 * the callee's `team.handle` → the room → the caller), sequential and pipelined, beside the
 * same exchange through the bare relay party and through the same relay hibernating (as the
 * room must), a second reference reported under `_vs_hibernating_relay` keys. Sequential calls
 * also go through the floor (`relay-floor.ts`: that relay doing only what a room must per call
 * frame, between bare sockets sending an agent's frames), reported as `latency_p50_vs_floor`:
 * what is left to win in the room and the client together.
 *
 * Pipelined calls keep 1,000 in flight; the callee raises the room's per-callee cap (256 by
 * default) with `team.setMaxInFlight`.
 */
import {
  floorEcho,
  type Metric,
  percentile,
  range,
  relayEcho,
  type Scenario,
  waitFor,
  withCpu,
  within,
} from "../lib.ts";

const WINDOW = 1000;
const WARMUP = 2000;

type Call = (input: unknown) => Promise<unknown>;

/** `n` calls one after another; per-call latencies in ms and the total time. */
async function sequential(call: Call, n: number): Promise<{ latencies: number[]; totalMs: number }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await call({ i, text: "ping" });
    latencies.push(performance.now() - start);
  }
  return { latencies, totalMs: performance.now() - t0 };
}

/** `n` calls with `window` in flight at any time; calls per second. */
async function pipelined(call: Call, n: number, window: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) await call({ i: next++, text: "ping" });
  };
  await Promise.all(range(Math.min(window, n)).map(worker));
  return n / ((performance.now() - t0) / 1000);
}

export const rpc: Scenario = {
  name: "rpc",
  steps: (o) => o.runs * 7 + 1,
  async run(ctx) {
    const { quick, runs } = ctx.options;
    const SEQUENTIAL = quick ? 300 : 2000;
    const PIPELINED = quick ? 2000 : 10_000;
    const server = await ctx.server();
    const closers: (() => unknown)[] = [];
    try {
      // crosstalk: caller and callee agents in one team.
      const team = `rpc-${ctx.tag}`;
      const caller = await server.agent("caller", { team });
      const callee = await server.agent("callee", { team });
      closers.push(
        () => caller.close(),
        () => callee.close(),
      );
      callee.handle("echo", (input) => input);
      callee.setMaxInFlight(WINDOW);
      await waitFor("the callee's methods in the roster", () =>
        caller.agents().some((a) => a.agent === "callee" && a.methods.includes("echo")),
      );
      const crosstalk: Call = (input) => caller.call("callee", "echo", input, { timeoutMs: 30_000 });

      // Relay: the same exchange as raw frames, routed by connection id; once through the
      // stock relay (the baseline) and once through the same code hibernating, as the room does.
      const relayCall = async (party: string): Promise<Call> => {
        const { call, caller, callee } = await relayEcho(server, party, `rpc-${ctx.tag}`);
        closers.push(caller.close, callee.close);
        return call;
      };
      const relay = await relayCall("relay");
      const hibernating = await relayCall("relayhib");
      const floored = await floorEcho(server, `rpc-${ctx.tag}`);
      closers.push(floored.caller.close, floored.callee.close);
      const floor = floored.call;
      const systems = [
        ["x", "crosstalk", crosstalk],
        ["r", "relay", relay],
        ["h", "hibernating relay", hibernating],
      ] as const;

      // Warm up every path equally (JIT, connections, the room's first frames): the first
      // ~2,000 calls after start are measurably slower, so fewer would leave the first
      // measured run cold.
      for (const call of [...systems.map(([, , c]) => c), floor])
        await within("rpc warm-up", sequential(call, WARMUP), 60_000);
      ctx.step("warmed up");

      const m = {
        p50: { x: [] as number[], r: [] as number[], h: [] as number[] },
        p99: { x: [] as number[], r: [] as number[], h: [] as number[] },
        seq: { x: [] as number[], r: [] as number[], h: [] as number[] },
        pipe: { x: [] as number[], r: [] as number[], h: [] as number[] },
        floorP50: [] as number[],
        roomUs: { x: [] as number[], r: [] as number[], h: [] as number[] },
        clientUs: { x: [] as number[], r: [] as number[], h: [] as number[] },
      };
      for (let run = 0; run < runs; run++) {
        for (const [key, name, call] of systems) {
          const s = await within("sequential calls", sequential(call, SEQUENTIAL), 120_000);
          m.p50[key].push(percentile(s.latencies, 50));
          m.p99[key].push(percentile(s.latencies, 99));
          m.seq[key].push(SEQUENTIAL / (s.totalMs / 1000));
          ctx.step(`sequential ${name} ${run + 1}/${runs}`);
        }
        const f = await within("sequential calls", sequential(floor, SEQUENTIAL), 120_000);
        m.floorP50.push(percentile(f.latencies, 50));
        ctx.step(`sequential floor ${run + 1}/${runs}`);
        for (const [key, name, call] of systems) {
          const p = await withCpu(server, () => within("pipelined calls", pipelined(call, PIPELINED, WINDOW), 120_000));
          m.pipe[key].push(p.result);
          m.roomUs[key].push((p.roomCpuS / PIPELINED) * 1e6);
          m.clientUs[key].push((p.benchCpuS / PIPELINED) * 1e6);
          ctx.step(`pipelined ${name} ${run + 1}/${runs}`);
        }
      }
      // Judged against the stock relay; the hibernating relay is a second reference from the
      // same run (extra `_vs_hibernating_relay` keys), the runtime's floor for a hibernating room.
      type Values = { x: number[]; r: number[]; h: number[] };
      const metric = (name: string, unit: string, v: Values, note?: string): Metric[] => [
        { name, unit, runs: v.x, baselineRuns: v.r, baselineName: "relay", ...(note ? { note } : {}) },
        { name: `${name}_vs_hibernating_relay`, unit, runs: v.x, baselineRuns: v.h, baselineName: "hibernating relay" },
      ];
      return [
        ...metric("latency_p50", "ms", m.p50, `${SEQUENTIAL} sequential calls`),
        {
          name: "latency_p50_vs_floor",
          unit: "ms",
          runs: m.p50.x,
          baselineRuns: m.floorP50,
          baselineName: "floor",
          note: "relay-floor.ts: the hibernating relay doing only what a room must per call frame",
        },
        ...metric("latency_p99", "ms", m.p99),
        ...metric("calls_per_s", "calls/s", m.seq, "sequential"),
        ...metric("pipelined_calls_per_s", "calls/s", m.pipe, `${PIPELINED} calls, ${WINDOW} in flight`),
        ...metric("room_cpu_per_call", "µs", m.roomUs, "workerd CPU, pipelined"),
        ...metric("client_cpu_per_call", "µs", m.clientUs, "bench process CPU (both agents), pipelined"),
      ];
    } finally {
      for (const close of closers) await close();
    }
  },
};
