/**
 * The room process is killed (SIGKILL, no chance to flush) and restarted on the same persist
 * directory: every acknowledged event and state write is still there, agents reconnect by
 * themselves, sequencing continues without gaps, and nothing is delivered twice — also for
 * an event whose ack was lost with its socket, and for a projection whose agent crashed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { PROTOCOL_VERSION, type StoredEvent, type Team } from "../client/index.ts";
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

const seqs = (events: StoredEvent[]) => events.map((e) => e.seq);
async function collect(team: Team, options: Parameters<Team["history"]>[0]): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const e of team.history(options)) out.push(e);
  return out;
}

describe("idempotent publish", () => {
  it("keeps one copy of an event whose ack was lost with the socket, across a room restart", async () => {
    const team = room.team("lostack");
    const observer = await room.agent("observer", { team });
    await observer.publish("before", {});
    const seen: StoredEvent[] = [];
    await observer.subscribe(">", (e) => void seen.push(e), { from: "start" }).ready;

    // A raw socket sends the publish and is cut at once, before any ack can be read.
    const token = await room.token("flaky", "x", { team });
    const ws = new WebSocket(
      `ws://${room.host}/parties/main/${team}?agent=flaky&role=x&v=${PROTOCOL_VERSION}&token=${token}`,
    );
    await new Promise((r) => ws.once("message", r)); // welcome
    ws.send(
      JSON.stringify({
        type: "publish",
        ref: "p1",
        stream: "main",
        events: [{ id: "evt-lost-ack", type: "deal.closed", data: { n: 1 } }],
      }),
    );
    ws.terminate();
    await eventually(() => expect(seen.map((e) => e.id)).toContain("evt-lost-ack"));

    await room.kill("SIGKILL");
    await room.restart();
    const flaky = await room.agent("flaky", { team });
    const again = await flaky.publish("deal.closed", { n: 1 }, { id: "evt-lost-ack" });
    expect(again).toMatchObject({ seq: 2, duplicate: true });
    const history = await collect(flaky, {});
    expect(history.filter((e) => e.id === "evt-lost-ack")).toHaveLength(1);
    expect(seqs(history)).toEqual([1, 2]);
  });
});

describe("projections", () => {
  it("apply each event exactly once across an agent crash and a room restart, and rebuild to the same state", async () => {
    const team = room.team("projection");
    const pub = await room.agent("pub", { team });
    const totals = (t: Team) => t.state<{ total: number; count: number }>("totals");
    const reduce = (entity: { total: number; count: number } | undefined, e: { data: unknown }) => {
      const { amount } = e.data as { amount: number };
      return { total: (entity?.total ?? 0) + amount, count: (entity?.count ?? 0) + 1 };
    };
    const publishSome = async (from: number, n: number) => {
      for (let i = from; i < from + n; i++) await pub.publish("deal.closed", { amount: i }, { key: `rep-${i % 3}` });
    };
    const expected = (n: number) => {
      const out: Record<string, { total: number; count: number }> = {};
      for (let i = 0; i < n; i++) {
        const k = `rep-${i % 3}`;
        out[k] = { total: (out[k]?.total ?? 0) + i, count: (out[k]?.count ?? 0) + 1 };
      }
      return out;
    };

    const first = await room.agent("projector-1", { team });
    const p1 = first.project({ into: totals(first), types: ["deal.*"], reduce });
    await p1.running;
    await publishSome(0, 40);
    await eventually(() => expect(p1.lastSeq).toBe(40));
    await first.close(); // Crash.
    await publishSome(40, 20);

    await room.kill("SIGKILL");
    await room.restart();
    await pub.online(20_000);
    await publishSome(60, 20);

    const second = await room.agent("projector-2", { team });
    const p2 = second.project({ into: totals(second), types: ["deal.*"], reduce });
    await eventually(() => expect(p2.lastSeq).toBe(80), { timeoutMs: 20_000 });
    await eventually(() => expect(totals(second).toJSON()).toEqual(expected(80)));
    const before = JSON.stringify(totals(second).toJSON());
    await p2.rebuild();
    await eventually(() => expect(p2.lastSeq).toBe(80));
    expect(JSON.stringify(totals(second).toJSON())).toBe(before);
    await p2.stop();
  });
});
