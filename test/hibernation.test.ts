/**
 * Hibernation on a real `partykit dev`: the room's object is dropped after ~10 s without
 * traffic while its sockets stay open, and the next message builds it again (its constructor
 * and `onStart` run: the room logs a second start). Everything the agents had set up —
 * sessions, subscriptions, served methods, state sync, leases, group members and the events
 * they hold — carries on, with nothing acknowledged delivered twice and nothing lost. Also:
 * group leases survive a killed room (no mass redelivery after a restart).
 *
 * The idle waits are the point of these tests (nothing may touch the room while it idles),
 * so they sleep; everything else waits with `eventually()`.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { StoredEvent, Team } from "../client/index.ts";
import { eventually, type RoomServer, sleep, startFaultProxy, startRoom } from "./harness.ts";

/** Longer than workerd's idle time before it hibernates an object (about 10 s). */
const IDLE_MS = 16_000;

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** The starts the room logged for `team` (`room started (start N, …)`): one per constructor run. */
const startsOf = (team: string): number[] =>
  [...room.output().matchAll(new RegExp(`\\[crosstalk ${team}\\] room started \\(start (\\d+)`, "g"))].map((m) =>
    Number(m[1]),
  );

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** The room's view of group `workers`. */
const workers = async (agent: Team) => (await agent.consumers()).consumers.find((c) => c.name === "workers");

/**
 * Members of group `workers` on `job.*`; `hold` makes a member keep what it gets until released
 * (the client runs a member's handler one event at a time, so the rest wait behind the first).
 */
function worker(agent: Team, handled: number[], hold?: { held: number[]; release: Promise<void> }) {
  return agent.subscribe(
    "job.*",
    async (e: StoredEvent) => {
      if (hold) {
        hold.held.push(e.seq);
        await hold.release;
      }
      handled.push(e.seq);
    },
    { group: "workers", from: "start", maxAckPending: 4, ackWaitMs: 120_000 },
  ).ready;
}

it("an idle room hibernates, wakes on the next message, and every agent carries on", async () => {
  const team = room.team("hibernate");
  const [pub, sub, callee, w1, w2] = await Promise.all(
    ["pub", "sub", "callee", "w1", "w2"].map((id) => room.agent(id, { team })),
  );
  if (!pub || !sub || !callee || !w1 || !w2) throw new Error("agents");
  const seen: number[] = [];
  await sub.subscribe(">", (e) => void seen.push(e.seq), { from: "start" }).ready;
  callee.handle("double", (n) => Number(n) * 2);
  await eventually(async () => expect(await pub.call("callee", "double", 1)).toBe(2));
  const handled1: number[] = [];
  const handled2: number[] = [];
  let release = () => {};
  const hold = { held: [] as number[], release: new Promise<void>((r) => (release = r)) };
  await worker(w2, handled2, hold);
  const deals = pub.state("deals");
  const mirror = sub.state("deals");
  await Promise.all([deals.ready, mirror.ready]);
  deals.set("D1", { stage: "open" });
  const held = await pub.lease("invoice-run", { ttlMs: 300_000, autoRenew: false });

  // w2 takes (and holds) the first four jobs before w1 joins; w1 gets the other two.
  for (const n of range(1, 4)) await pub.publish("job.todo", { n });
  await eventually(async () => expect(await workers(pub)).toMatchObject({ inFlight: 4 }));
  await worker(w1, handled1);
  for (const n of range(5, 6)) await pub.publish("job.todo", { n });
  await pub.publish("note.added", { n: 7 });
  await eventually(() => expect(handled1).toEqual([5, 6]));
  await eventually(() => expect(seen).toEqual(range(1, 7)));
  await eventually(() => expect(mirror.get("D1")).toEqual({ stage: "open" }));
  expect(startsOf(team)).toEqual([1]);

  await sleep(IDLE_MS);

  // The next message wakes it: the constructor ran again (a second start), and the sockets came back.
  const after = await pub.publish("job.todo", { n: 8 });
  expect(after.seq).toBe(8);
  await eventually(() => expect(startsOf(team)).toEqual([1, 2]));
  expect(room.output()).toContain(`[crosstalk ${team}] room started (start 2, 5 sockets resumed)`);
  expect([pub, sub, callee, w1, w2].map((a) => a.status)).toEqual(Array(5).fill("online"));

  // Subscriptions: the new event reaches the subscriber once, after the old ones.
  await pub.publish("note.added", { n: 9 });
  await eventually(() => expect(seen).toEqual(range(1, 9)));
  // Calls: the callee's methods are still known to the room.
  expect(await pub.call("callee", "double", 21)).toBe(42);
  // State syncs both ways.
  deals.set("D2", { stage: "won" });
  mirror.set("D3", { stage: "lost" });
  await eventually(() => expect(mirror.get("D2")).toEqual({ stage: "won" }));
  await eventually(() => expect(deals.get("D3")).toEqual({ stage: "lost" }));
  // Leases: still held by pub.
  await expect(sub.lease("invoice-run")).rejects.toMatchObject({ code: "CONFLICT" });
  // Groups: w2 still holds 1–4 (not redelivered to w1); new jobs go on being shared.
  await eventually(() => expect(handled1).toContain(8));
  release();
  for (const n of range(10, 13)) await pub.publish("job.todo", { n });
  const jobs = [...range(1, 6), 8, ...range(10, 13)];
  await eventually(() => expect([...handled1, ...handled2].sort((a, b) => a - b)).toEqual(jobs));
  expect(handled2.slice(0, 4)).toEqual(range(1, 4));
  expect(handled1.filter((s) => s <= 4)).toEqual([]);
  await eventually(async () =>
    expect(await workers(pub)).toMatchObject({
      acked: 13,
      members: 2,
      inFlight: 0,
    }),
  );
  // The roster never lost anyone, and the released lease goes to the next taker.
  expect(
    sub
      .agents()
      .map((a) => a.agent)
      .sort(),
  ).toEqual(["callee", "pub", "sub", "w1", "w2"]);
  await held.release();
  await expect(sub.lease("invoice-run", { autoRenew: false })).resolves.toMatchObject({ name: "invoice-run" });
}, 90_000);

it("keeps consumer-group leases across a killed room: held events are not redelivered", async () => {
  const team = room.team("leases-restart");
  // w2 reaches the room through a proxy, so it comes back only after w1 is in the group again:
  // a room that forgot w2's leases would hand its four events to w1 then.
  const proxy = await startFaultProxy({ port: room.port });
  const [pub, w1] = await Promise.all(["pub", "w1"].map((id) => room.agent(id, { team })));
  const w2 = await room.agent("w2", { team, host: proxy.host });
  if (!pub || !w1) throw new Error("agents");
  const handled1: number[] = [];
  const handled2: number[] = [];
  let release = () => {};
  const hold = { held: [] as number[], release: new Promise<void>((r) => (release = r)) };
  await worker(w2, handled2, hold);
  for (const n of range(1, 4)) await pub.publish("job.todo", { n });
  await eventually(async () => expect(await workers(pub)).toMatchObject({ inFlight: 4 }));
  await worker(w1, handled1);

  proxy.mode = "refuse";
  await room.kill("SIGKILL");
  await room.restart();
  await eventually(() => expect([pub, w1].map((a) => a.status)).toEqual(["online", "online"]), { timeoutMs: 20_000 });

  // New work flows to w1; 1–4 stay leased to w2 while it is away.
  for (const n of range(5, 8)) await pub.publish("job.todo", { n });
  await eventually(() => expect(handled1).toEqual(range(5, 8)));
  await eventually(async () => expect(await workers(pub)).toMatchObject({ acked: 0, members: 1, inFlight: 4 }));
  // w2 comes back: its leases are sent to it again (the one it is handling is not run twice).
  proxy.mode = "pass";
  await eventually(() => expect(w2.status).toBe("online"), { timeoutMs: 20_000 });
  await eventually(async () => expect(await workers(pub)).toMatchObject({ members: 2 }));
  release();
  await eventually(() => expect(handled2).toEqual(range(1, 4)));
  await eventually(async () => expect(await workers(pub)).toMatchObject({ acked: 8, inFlight: 0 }));
  expect(hold.held).toEqual(range(1, 4));
  expect(handled1).toEqual(range(5, 8));
  await proxy.close();
}, 90_000);
