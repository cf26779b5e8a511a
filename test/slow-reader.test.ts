/**
 * Slow and stuck agents on a real `partykit dev`: one agent stops reading its socket (behind a
 * fault proxy that stops reading what the room sends, so the kernel's buffers fill and the
 * room's sends back up) while ten others consume a stream at full speed. The room holds each
 * socket to an unread budget (`party/flow.ts`); past it, it closes the stuck one with
 * `SlowReader` (4005) instead of buffering for it. The others get every event exactly once, in
 * order; the stuck one, once it reads again, reconnects and catches up from the log (its live
 * window and the archive below it) with every event exactly once, in order.
 *
 * The speed side (the others' p99 beside a run without the stuck agent, the room's memory) is
 * measured by the bench's `slow` scenario, not here.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import type { Team } from "../client/index.ts";
import { CLOSE_CODES } from "../protocol/index.ts";
import { eventually, type RoomServer, startFaultProxy, startRoom } from "./harness.ts";

/**
 * 100k in the bench (`slow`); 20k here keeps the test near 20 s on two cores (100k took 124 s).
 * `SLOW_EVENTS=100000` runs the full count.
 */
const EVENTS = Number(process.env.SLOW_EVENTS ?? 20_000);
const FAST = 10;
/**
 * Below the default 8 MiB, so the stall crosses it well before the end of the run (each agent
 * is sent ~3 MB), and well above what ten readers sharing this process fall behind.
 */
const BUDGET = 1024 * 1024;

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom({ vars: { CROSSTALK_MAX_UNREAD_BYTES: String(BUDGET), CROSSTALK_LOG_WINDOW: "2048" } });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** Subscribes `agent` from the start of `tick`, recording every seq its handler sees, in order. */
async function consume(agent: Team): Promise<number[]> {
  const seqs: number[] = [];
  const sub = agent.subscribe("tick", (event) => {
    seqs.push(event.seq);
  });
  await sub.ready;
  return seqs;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

/** The room's count of sockets it closed as slow readers, by agent. */
async function slowCloses(team: string, token: string): Promise<Record<string, number>> {
  const text = await (
    await room.fetch(`/parties/main/${team}/metrics`, { headers: { authorization: `Bearer ${token}` } })
  ).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^crosstalk_slow_reader_closes_total\{agent="([^"]+)"\} (\d+)$/gm))
    out[m[1] as string] = Number(m[2]);
  return out;
}

it(`closes an agent that stops reading with SlowReader; it and ${FAST} others get all ${EVENTS} events exactly once, in order`, async () => {
  const team = room.team("slow");
  const proxy = await startFaultProxy({ port: room.port });
  const closes: number[] = [];
  class Recording extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      this.on("close", (code: number) => closes.push(code));
    }
  }
  const fast = await Promise.all(range(FAST).map((i) => room.agent(`fast-${i}`, { team })));
  // The heartbeat would call the stalled link dead on its own (4004) after 35 s: off, so what
  // ends the socket is the room's budget.
  const slow = await room.agent("slow", { team, host: proxy.host, WebSocket: Recording, heartbeatIntervalMs: 0 });
  const publisher = await room.agent("publisher", { team });
  const admin = await room.token("ops", "admin", { team });
  const seen = await Promise.all(fast.map(consume));
  const slowSeen = await consume(slow);

  proxy.mode = "stall";
  try {
    const batch = 500;
    for (let from = 1; from <= EVENTS; from += batch) {
      await publisher.publishBatch(
        range(Math.min(batch, EVENTS - from + 1)).map((i) => ({
          type: "tick",
          data: { n: from + i - 1, pad: "x".repeat(64) },
        })),
      );
    }
    for (const [i, seqs] of seen.entries()) {
      await eventually(() => expect({ agent: i, got: seqs.length }).toEqual({ agent: i, got: EVENTS }), {
        timeoutMs: 120_000,
        intervalMs: 100,
      });
    }
    // While the agent still reads nothing, the room has given up on its socket.
    await eventually(async () => expect(await slowCloses(team, admin)).toMatchObject({ slow: 1 }), {
      timeoutMs: 30_000,
    });
    expect(slowSeen.length).toBeLessThan(EVENTS);
  } finally {
    proxy.mode = "pass";
  }
  // Reading again: what the room sent before the close, then the close, then a reconnect that
  // catches up from the log.
  await eventually(() => expect(slowSeen.length).toBe(EVENTS), { timeoutMs: 120_000, intervalMs: 100 });
  expect(closes).toContain(CLOSE_CODES.SlowReader.code);
  const all = range(EVENTS);
  for (const seqs of [...seen, slowSeen]) expect(seqs).toEqual(all);
  // The ones that kept reading were never taken for slow.
  expect(Object.keys(await slowCloses(team, admin))).toEqual(["slow"]);
  await proxy.close();
}, 240_000);
