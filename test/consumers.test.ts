/**
 * Consumers the room remembers, over the in-process room (the real `TeamRoom`): a durable consumer that crashes resumes
 * exactly after its last acknowledged event; a consumer group splits the load so each event
 * is handled once, and a member that dies holding leases has its events redelivered.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StoredEvent } from "../client/index.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

let room: TestRoom;
beforeAll(() => {
  room = createTestRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const count = (xs: number[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<number, number>());

describe("durable consumers", () => {
  it("resume exactly after the last acknowledged event when the consumer crashes", async () => {
    const team = room.team("durable");
    const pub = await room.agent("pub", { team });
    await pub.publishBatch(range(1, 300).map((n) => ({ type: "invoice.due", data: { n } })));

    const first = await room.agent("contracts-a", { team });
    const handledByFirst: number[] = [];
    let crash!: () => void;
    const crashed = new Promise<void>((r) => {
      crash = r;
    });
    first.subscribe(
      "invoice.*",
      async (e) => {
        handledByFirst.push(e.seq);
        // The process dies mid-stream, inside a handler, before this event is acked.
        if (e.seq === 120) {
          await first.close();
          crash();
          await new Promise(() => {});
        }
      },
      { consumer: "contract-agent", from: "start" },
    );
    await crashed;
    const { consumers } = await pub.consumers("main");
    const position = consumers.find((c) => c.name === "contract-agent");
    expect(position).toMatchObject({ kind: "durable", lag: 300 - (position?.acked ?? 0) });
    const acked = position?.acked ?? -1;
    expect(acked).toBeGreaterThanOrEqual(100);
    expect(acked).toBeLessThan(120);

    // The same consumer name on another agent (another machine) carries on.
    const second = await room.agent("contracts-b", { team });
    const handledBySecond: number[] = [];
    const sub = second.subscribe("invoice.*", (e) => void handledBySecond.push(e.seq), {
      consumer: "contract-agent",
      from: "start", // ignored: the consumer exists
    });
    await sub.ready;
    await eventually(() => expect(handledBySecond.at(-1)).toBe(300));
    expect(handledBySecond[0]).toBe(acked + 1);
    expect(handledBySecond).toEqual(range(acked + 1, 300));
    expect(handledByFirst).toEqual(range(1, 120));
    // Nothing acked was handled again; the union covers everything.
    expect(new Set([...handledByFirst, ...handledBySecond]).size).toBe(300);
    await eventually(async () =>
      expect((await pub.consumers()).consumers.find((c) => c.name === "contract-agent")).toMatchObject({
        acked: 300,
        lag: 0,
      }),
    );
  });
});

describe("consumer groups", () => {
  it("split 3,000 events over 3 members, each handled once; a member killed mid-lease loses nothing", async () => {
    const team = room.team("group");
    const pub = await room.agent("pub", { team });
    const members = await Promise.all(["m1", "m2", "m3"].map((id) => room.agent(id, { team })));
    const handled: Record<string, number[]> = { m1: [], m2: [], m3: [] };
    let stuck = 0;
    for (const m of members) {
      m.subscribe(
        "order.*",
        async (e) => {
          // m3 dies after 200 events while holding leases that never finish.
          if (m.agent === "m3" && handled.m3?.length === 200) {
            stuck++;
            await new Promise(() => {});
          }
          handled[m.agent]?.push(e.seq);
        },
        { group: "billing", from: "start", maxAckPending: 8, ackWaitMs: 60_000 },
      );
    }
    await Promise.all(members.map((m) => eventually(() => expect(m.status).toBe("online"))));
    for (let i = 0; i < 3; i++)
      await pub.publishBatch(range(1, 1000).map((n) => ({ type: "order.placed", data: { n } })));

    await eventually(() => expect(stuck).toBe(1), { timeoutMs: 30_000 });
    const m3 = members[2];
    await m3?.close();

    await eventually(() => expect(Object.values(handled).flat().length).toBe(3000), { timeoutMs: 30_000 });
    const all = Object.values(handled).flat();
    expect([...count(all).values()].every((n) => n === 1)).toBe(true);
    expect(all.sort((a, b) => a - b)).toEqual(range(1, 3000));
    expect(handled.m3).toHaveLength(200);
    expect(handled.m1?.length).toBeGreaterThan(200);
    expect(handled.m2?.length).toBeGreaterThan(200);
    await eventually(async () =>
      expect((await pub.consumers()).consumers.find((c) => c.name === "billing")).toMatchObject({
        kind: "group",
        acked: 3000,
        lag: 0,
        members: 2,
        inFlight: 0,
      }),
    );
  });

  it("keeps per-key order, spreads to a member that joins later, and dead-letters a poison event", async () => {
    const team = room.team("keys");
    const pub = await room.agent("pub", { team });
    const log: { member: string; key: string; n: number }[] = [];
    const join = async (id: string) => {
      const m = await room.agent(id, { team });
      await m.subscribe(
        "step.*",
        async (e: StoredEvent) => {
          const { key, n, poison } = e.data as { key: string; n: number; poison?: boolean };
          if (poison) throw new Error("poison");
          await new Promise((r) => setTimeout(r, Math.random() * 3));
          log.push({ member: id, key, n });
        },
        { group: "steps", from: "start", maxDeliver: 2, retryDelayMs: 1 },
      ).ready;
      return m;
    };
    await join("k1");
    const events = range(1, 300).map((i) => ({
      type: "step.done",
      data: { key: `deal-${i % 5}`, n: i },
      options: { key: `deal-${i % 5}` },
    }));
    await pub.publishBatch(events.slice(0, 150));
    await join("k2");
    await pub.publish("step.done", { key: "deal-x", n: 0, poison: true }, { key: "deal-x" });
    await pub.publishBatch(events.slice(150));

    await eventually(() => expect(log).toHaveLength(300), { timeoutMs: 30_000 });
    for (let k = 0; k < 5; k++) {
      const ns = log.filter((l) => l.key === `deal-${k}`).map((l) => l.n);
      expect(ns).toEqual([...ns].sort((a, b) => a - b));
    }
    expect(log.some((l) => l.member === "k2")).toBe(true);
    await eventually(async () => {
      const dlq: StoredEvent[] = [];
      for await (const e of pub.history({ stream: "main.dlq" })) dlq.push(e);
      expect(dlq).toHaveLength(1);
      expect(dlq[0]?.data).toMatchObject({ seq: 151, deliveries: 2, consumer: "steps", error: "poison" });
    });
  });
});
