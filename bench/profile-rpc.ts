/**
 * Where the time of one sequential call goes (`rpc.latency_p50`): a real `partykit dev`, a
 * caller and a callee agent in this process (as the `rpc` scenario has them), and the same
 * exchange through the bare relay and the hibernating relay. Every `ws` socket of this process
 * is stamped when it sends and when a message arrives, so each call splits into hops:
 *
 *   caller out   call() → the caller's socket write          (caller client CPU)
 *   room in      → the callee's socket receives the request  (loopback, the room, node wake-up)
 *   callee       → the callee's socket writes the answer     (callee client CPU)
 *   room out     → the caller's socket receives the response (loopback, the room, node wake-up)
 *   caller in    → the call's promise resolves               (caller client CPU)
 *
 * Medians per hop over ROUNDS rounds of N calls per system, interleaved, with this process's
 * and workerd's CPU per call over the same sequential calls. Two more systems send the frames
 * the agents send (trace fields included) from bare sockets: "room, raw" through the room (the
 * room's share without the client library's), and "floor" through `relay-floor.ts`, the
 * hibernating relay doing only the work a room must do per call frame (parse and check,
 * authorize, route by name, answer with the room's fields): the best a room can do here.
 *
 *   node --import tsx bench/profile-rpc.ts                      # N=2000 ROUNDS=5
 *   node --import tsx --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile-rpc.ts
 *   ROOM_PROFILE=/tmp/room.cpuprofile node --import tsx bench/profile-rpc.ts
 *
 * ROOM_PROFILE: a V8 CPU profile of the worker (the room) over one round of the first system's
 * calls, taken through the dev server's inspector (`testing/inspector.ts` finds it), for
 * DevTools or a script grouping self time by function; the bundle it names lines of is written
 * beside it (`<ROOM_PROFILE>.js`). ROOM_INTERVAL: the sampling interval in µs (default 100).
 * partykit's own workerd (2024-07-18) samples the wrong thread: its inspector runs Profiler
 * commands on a thread of their own, and V8 samples the thread that started the profiler, so
 * every sample was "(program)" (cloudflare/workerd#1754, fixed by workerd#2497, August 2024).
 * With ROOM_PROFILE the dev server therefore runs wrangler's newer workerd
 * (`MINIFLARE_WORKERD_PATH`, which the caller may set itself): the same room code on a newer
 * V8, so read the profile's shares, and compare the plain run's figures.
 *
 * ONLY=<keys> limits the systems (x crosstalk, w room with raw sockets, f the floor, r relay,
 * h hibernating relay). BARE=1: the raw sockets' calls carry no trace fields (callId,
 * correlationId, traceparent), to weigh what those cost the room.
 *
 * IN_PROCESS=1: instead, the CPU per sequential call of the room and both agents in this one
 * process (`createTestRoom`, in-memory sockets), for `--cpu-prof` without I/O in the profile.
 */
import WebSocket from "ws";
import { PROTOCOL_VERSION } from "../protocol/index.ts";
import { createTestRoom } from "../testing/index.ts";
import {
  agentFrames,
  floorEcho,
  median,
  percentile,
  rawSocket,
  relayEcho,
  startServer,
  stopServer,
  useProfilableWorkerd,
  waitFor,
  withCpu,
  writeRoomProfile,
} from "./lib.ts";

const N = Number(process.env.N ?? 2000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const ROOM_PROFILE = process.env.ROOM_PROFILE;
const ONLY = process.env.ONLY;

/** The last send and the last message of every `ws` socket in this process (performance.now()). */
const stamps = new WeakMap<WebSocket, { sent: number; received: number }>();
const stampOf = (ws: WebSocket) => {
  const known = stamps.get(ws);
  if (known) return known;
  const s = { sent: 0, received: 0 };
  stamps.set(ws, s);
  return s;
};
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (this: WebSocket, ...args: Parameters<typeof send>) {
  stampOf(this).sent = performance.now();
  return send.apply(this, args);
} as typeof send;
const emit = WebSocket.prototype.emit;
WebSocket.prototype.emit = function (this: WebSocket, event: string | symbol, ...args: unknown[]) {
  if (event === "message") stampOf(this).received = performance.now();
  return emit.call(this, event, ...args);
};
/** Every `ws` socket made, by URL, so a system's two sockets can be found. */
const sockets: WebSocket[] = [];
const opened = WebSocket.prototype.addListener;
WebSocket.prototype.addListener = function (this: WebSocket, ...args: Parameters<typeof opened>) {
  if (!sockets.includes(this)) sockets.push(this);
  return opened.apply(this, args);
} as typeof opened;
WebSocket.prototype.on = WebSocket.prototype.addListener;

type Call = (input: unknown) => Promise<unknown>;
type System = { key: string; name: string; call: Call; caller: WebSocket; callee: WebSocket };
const HOPS = ["caller out", "room in", "callee", "room out", "caller in"] as const;

async function round(s: System): Promise<{ hops: number[][]; p50: number; benchUs: number; roomUs: number }> {
  const hops: number[][] = HOPS.map(() => []);
  const latencies: number[] = [];
  const a = stampOf(s.caller);
  const b = stampOf(s.callee);
  const run = await withCpu(server, async () => {
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      await s.call({ i, text: "ping" });
      const t5 = performance.now();
      latencies.push(t5 - t0);
      const marks = [t0, a.sent, b.received, b.sent, a.received, t5];
      for (let h = 0; h < HOPS.length; h++) (hops[h] as number[]).push((marks[h + 1] as number) - (marks[h] as number));
    }
  });
  return {
    hops,
    p50: percentile(latencies, 50),
    benchUs: (run.benchCpuS / N) * 1e6,
    roomUs: (run.roomCpuS / N) * 1e6,
  };
}

if (process.env.IN_PROCESS === "1") await inProcess();
if (ROOM_PROFILE) useProfilableWorkerd();

const server = await startServer();
try {
  const team = "profile-rpc";
  const callerTeam = await server.agent("caller", { team });
  const callerWs = sockets.at(-1) as WebSocket;
  const calleeTeam = await server.agent("callee", { team });
  const calleeWs = sockets.at(-1) as WebSocket;
  calleeTeam.handle("echo", (input) => input);
  await waitFor("the callee's methods in the roster", () =>
    callerTeam.agents().some((x) => x.agent === "callee" && x.methods.includes("echo")),
  );
  const systems: System[] = [
    {
      key: "x",
      name: "crosstalk",
      call: (input) => callerTeam.call("callee", "echo", input, { timeoutMs: 30_000 }),
      caller: callerWs,
      callee: calleeWs,
    },
  ];
  {
    // The room with bare sockets: the frames an agent sends, and nothing of the client library.
    const url = async (agent: string) =>
      `/parties/main/${team}?token=${await server.token(agent, "agent", { team })}&agent=${agent}&role=agent&v=${PROTOCOL_VERSION}&_pk=raw-${agent}&batch=1`;
    const a = await rawSocket(server, await url("raw-caller"));
    const b = await rawSocket(server, await url("raw-callee"));
    b.send({ type: "rpc.handle", methods: ["echo"] });
    await waitFor("the raw callee's methods in the roster", () =>
      callerTeam.agents().some((x) => x.agent === "raw-callee" && x.methods.includes("echo")),
    );
    systems.push({ key: "w", name: "room, raw", call: agentFrames(a, b, "raw-callee"), caller: a.ws, callee: b.ws });
  }
  {
    // The floor: the same bare sockets and frames through `relay-floor.ts`, the hibernating
    // relay doing only the work the room must do per call frame.
    const { call, caller, callee } = await floorEcho(server, team);
    systems.push({ key: "f", name: "floor", call, caller: caller.ws, callee: callee.ws });
  }
  for (const [key, party] of [
    ["r", "relay"],
    ["h", "relayhib"],
  ] as const) {
    const { call, caller, callee } = await relayEcho(server, party, team);
    systems.push({ key, name: party, call, caller: caller.ws, callee: callee.ws });
  }
  const chosen = systems.filter((s) => !ONLY || ONLY.includes(s.key));
  for (const s of chosen) await round(s);

  const results = new Map<string, Awaited<ReturnType<typeof round>>[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of chosen) {
      const got = await round(s);
      results.set(s.key, [...(results.get(s.key) ?? []), got]);
      process.stderr.write(`round ${r + 1}/${ROUNDS} ${s.name}: p50 ${got.p50.toFixed(3)} ms\n`);
    }
  }

  const fmt = (n: number) => n.toFixed(3).padStart(8);
  const us = (n: number) => n.toFixed(1).padStart(8);
  const lines = [`${"".padEnd(22)}${chosen.map((s) => s.name.padStart(12)).join("")}`];
  const row = (label: string, value: (k: string) => string) =>
    lines.push(`${label.padEnd(22)}${chosen.map((s) => value(s.key).padStart(12)).join("")}`);
  const all = (k: string) => results.get(k) ?? [];
  for (let h = 0; h < HOPS.length; h++)
    row(`${HOPS[h]} ms (p50)`, (k) => fmt(median(all(k).map((x) => percentile(x.hops[h] as number[], 50)))));
  row("call p50 ms", (k) => fmt(median(all(k).map((x) => x.p50))));
  row("this process µs/call", (k) => us(median(all(k).map((x) => x.benchUs))));
  row("workerd µs/call", (k) => us(median(all(k).map((x) => x.roomUs))));
  process.stdout.write(`${N} sequential calls x ${ROUNDS} rounds, medians\n${lines.join("\n")}\n`);

  if (ROOM_PROFILE) {
    const interval = Number(process.env.ROOM_INTERVAL ?? 100);
    await writeRoomProfile(server, ROOM_PROFILE, interval, () => round(chosen[0] as System));
    process.stdout.write(`room CPU profile of ${N} calls of ${chosen[0]?.name}: ${ROOM_PROFILE}\n`);
  }
} finally {
  await stopServer(server);
}
process.exit(0);

/** CPU per sequential call of the room and both agents in this process (no sockets, no workerd). */
async function inProcess(): Promise<never> {
  const room = createTestRoom();
  const caller = await room.agent("caller", { team: "profile-rpc" });
  const callee = await room.agent("callee", { team: "profile-rpc" });
  callee.handle("echo", (input) => input);
  await waitFor("the callee's methods in the roster", () =>
    caller.agents().some((x) => x.agent === "callee" && x.methods.includes("echo")),
  );
  const run = async (n: number) => {
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < n; i++) await caller.call("callee", "echo", { i, text: "ping" }, { timeoutMs: 30_000 });
    const cpu = process.cpuUsage(cpu0);
    return (cpu.user + cpu.system) / n;
  };
  await run(5000);
  const runs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) runs.push(await run(N * 10));
  process.stdout.write(
    `in process, ${N * 10} sequential calls x ${ROUNDS}: ${median(runs).toFixed(1)} µs CPU per call (room and both agents; runs ${runs.map((x) => x.toFixed(1)).join(" ")})\n`,
  );
  process.exit(0);
}
