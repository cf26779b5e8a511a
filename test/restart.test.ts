/**
 * The room process is killed (SIGKILL, no chance to flush) and restarted on the same persist
 * directory: every acknowledged event and state write is still there, agents reconnect by
 * themselves, sequencing continues without gaps, and nothing is delivered twice.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { StoredEvent } from "../client/index.ts";
import { cuttableSocket, eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

it("restores everything acknowledged after SIGKILL, and agents reconnect by themselves", async () => {
  const team = room.team("restart");
  const writer = await room.agent("writer", { team });
  const reader = await room.agent("reader", { team });
  const seen: StoredEvent[] = [];
  await reader.subscribe(">", (e) => void seen.push(e), { from: "start" }).ready;

  const acked = await Promise.all(Array.from({ length: 300 }, (_, i) => writer.publish("order.placed", { i })));
  expect(acked.map((a) => a.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  const deals = writer.state("deals");
  await deals.ready;
  for (let i = 0; i < 50; i++) deals.set(`D${i}`, { amount: i * 100, stage: "open" });
  // A state write is durable once the room has it; a second agent seeing it proves that.
  const mirror = reader.state("deals");
  await eventually(() => expect(mirror.size).toBe(50));
  await eventually(() => expect(seen.length).toBe(300));

  await room.kill("SIGKILL");
  await eventually(() => expect([writer.status, reader.status]).toEqual(["offline", "offline"]));

  // While the room is down: a publish waits in the outbox, a state write stays local.
  const queued = writer.publish("order.placed", { i: 300, offline: true });
  deals.update("D0", { stage: "won" });

  await room.restart();
  await eventually(() => expect([writer.status, reader.status]).toEqual(["online", "online"]), { timeoutMs: 20_000 });

  const late = await queued;
  expect(late).toMatchObject({ seq: 301, duplicate: false });
  const next = await writer.publish("order.shipped", { i: 0 });
  expect(next.seq).toBe(302);

  // A newcomer sees the whole history once, in order, and the state with the offline write.
  const newcomer = await room.agent("newcomer", { team });
  const replay: number[] = [];
  await newcomer.subscribe(">", (e) => void replay.push(e.seq), { from: "start" }).ready;
  await eventually(() => expect(replay).toEqual(Array.from({ length: 302 }, (_, i) => i + 1)));
  const fresh = newcomer.state("deals");
  await fresh.ready;
  await eventually(() => expect(fresh.get("D0")).toEqual({ amount: 0, stage: "won" }));
  expect(fresh.size).toBe(50);
  expect(fresh.get("D49")).toEqual({ amount: 4900, stage: "open" });

  // The old subscriber carried on across the restart without gaps or repeats.
  await eventually(() => expect(seen.map((e) => e.seq)).toEqual(Array.from({ length: 302 }, (_, i) => i + 1)));
  expect(seen[300]?.data).toEqual({ i: 300, offline: true });
});

it("answers a re-publish of an acknowledged event id with the original seq after a restart", async () => {
  const team = room.team("dedupe");
  const agent = await room.agent("pub", { team });
  const first = await agent.publish("deal.closed", { dealId: "D9" }, { id: "evt-fixed-1" });
  await room.kill("SIGKILL");
  await room.restart();
  await agent.online(20_000);
  const again = await agent.publish("deal.closed", { dealId: "D9" }, { id: "evt-fixed-1" });
  expect(again).toEqual({ ...first, duplicate: true });
  const other = await agent.publish("deal.closed", { dealId: "D10" });
  expect(other.seq).toBe(first.seq + 1);
});

it("asks the async query provider again on every reconnect (the hook for fresh tokens)", async () => {
  const net = cuttableSocket();
  const issued: string[] = [];
  const agent = await room.agent("token-user", {
    team: room.team("tokens"),
    WebSocket: net.WebSocket,
    query: async () => {
      await new Promise((r) => setTimeout(r, 5));
      issued.push(`token-${issued.length + 1}`);
      return { token: issued.at(-1) as string };
    },
  });
  expect(issued).toEqual(["token-1"]);
  net.cut();
  await eventually(() => expect(issued.length).toBeGreaterThanOrEqual(2));
  await agent.online(20_000);
  expect((await agent.publish("still.works", {})).seq).toBe(1);
});
