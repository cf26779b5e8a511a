/**
 * Event streams over the in-process room (the real `TeamRoom`): total order under concurrent
 * publishers, optimistic concurrency, atomic batches, typed events with upcasters, dead
 * letters, and replay from seq, Date and the archive. Idempotent re-publish across a SIGKILL
 * restart is in restart.test.ts, on the real server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { defineEvents, type StoredEvent, type Team } from "../client/index.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

/** A small live window, so a few thousand events already reach the archive. */
const WINDOW = 1024;
let room: TestRoom;
beforeAll(() => {
  room = createTestRoom({ streams: { window: WINDOW } });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const seqs = (events: StoredEvent[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
async function collect(team: Team, options: Parameters<Team["history"]>[0]): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const e of team.history(options)) out.push(e);
  return out;
}

describe("ordering", () => {
  it("gives gapless seqs in one total order to 5 concurrent publishers and every subscriber", async () => {
    const team = room.team("order");
    const publishers = await Promise.all(range(1, 5).map((i) => room.agent(`pub-${i}`, { team })));
    const subscribers = await Promise.all(range(1, 3).map((i) => room.agent(`sub-${i}`, { team })));
    const seen: StoredEvent[][] = subscribers.map(() => []);
    await Promise.all(
      subscribers.map((s, i) => s.subscribe(">", (e) => void seen[i]?.push(e), { from: "start" }).ready),
    );

    const acks = await Promise.all(
      publishers.map((p, i) => Promise.all(range(1, 200).map((n) => p.publish("tick.sent", { publisher: i, n })))),
    );
    const all = acks.flat().map((a) => a.seq);
    expect(all.sort((a, b) => a - b)).toEqual(range(1, 1000));
    // Each publisher's events keep its call order.
    for (const mine of acks) expect(mine.map((a) => a.seq)).toEqual([...mine.map((a) => a.seq)].sort((a, b) => a - b));

    await eventually(() => expect(seen.map((s) => s.length)).toEqual([1000, 1000, 1000]));
    expect(seqs(seen[0] ?? [])).toEqual(range(1, 1000));
    expect(seen[1]).toEqual(seen[0]);
    expect(seen[2]).toEqual(seen[0]);
    // Source is the publisher's id as the room knows it, never client-supplied.
    for (const e of seen[0] ?? []) expect(e.source).toBe(`pub-${(e.data as { publisher: number }).publisher + 1}`);
  });

  it("refuses a conditional publish when the stream has moved on, and appends batches atomically", async () => {
    const team = room.team("cas");
    const a = await room.agent("a", { team });
    const first = await a.publish("deal.created", { id: 1 }, { expectedLastSeq: 0 });
    expect(first.seq).toBe(1);
    await expect(a.publish("deal.created", { id: 2 }, { expectedLastSeq: 0 })).rejects.toMatchObject({
      code: "CONFLICT",
      details: { lastSeq: 1 },
    });
    // Retrying a conditional publish that did land is not a conflict.
    expect(await a.publish("deal.created", { id: 1 }, { id: first.id, expectedLastSeq: 0 })).toMatchObject({
      seq: 1,
      duplicate: true,
    });

    const batch = await a.publishBatch(range(1, 5).map((n) => ({ type: "line.added", data: { n } })));
    expect(batch.map((r) => r.seq)).toEqual([2, 3, 4, 5, 6]);
    const huge = "x".repeat(300 * 1024);
    await expect(
      a.publishBatch([
        { type: "line.added", data: { n: 6 } },
        { type: "line.added", data: { huge } },
      ]),
    ).rejects.toMatchObject({ code: "TOO_LARGE" });
    await expect(a.publish("line.added", { huge })).rejects.toMatchObject({ code: "TOO_LARGE" });
    await expect(a.publish("bad type!", {})).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect((await a.publish("line.added", { n: 7 })).seq).toBe(7);
  });
});

describe("dead letters and typed events", () => {
  it("retries a poison event maxDeliver times, dead-letters it with provenance, and flows on", async () => {
    const team = room.team("poison");
    const a = await room.agent("worker", { team });
    const calls: number[] = [];
    const errors: unknown[] = [];
    a.on("error", (e) => void errors.push(e));
    a.subscribe(
      "job.*",
      (e) => {
        calls.push(e.seq);
        if ((e.data as { poison?: boolean }).poison) throw new Error("cannot digest this");
      },
      { from: "start", maxDeliver: 3, retryDelayMs: 5 },
    );
    await a.publish("job.ok", { n: 1 });
    const bad = await a.publish("job.bad", { poison: true }, { correlationId: "corr-7" });
    await a.publish("job.ok", { n: 2 });
    await eventually(() => expect(calls).toEqual([1, 2, 2, 2, 3]));
    expect(errors).toHaveLength(3);

    const dlq = await collect(a, { stream: "main.dlq" });
    expect(dlq).toHaveLength(1);
    expect(dlq[0]).toMatchObject({
      type: "job.bad",
      causationId: bad.id,
      correlationId: "corr-7",
      data: { error: "cannot digest this", deliveries: 3, seq: 2, stream: "main", consumer: "worker" },
    });
    expect((dlq[0]?.data as { event?: StoredEvent } | undefined)?.event?.id).toBe(bad.id);
  });

  it("validates typed events on publish, upcasts old versions on read, dead-letters what fails its schema", async () => {
    const team = room.team("typed");
    const a = await room.agent("typed", { team });
    const DealClosedV2 = z.object({ dealId: z.string(), amount: z.number(), currency: z.string() });
    const catalog = defineEvents({
      "deal.closed": {
        schema: DealClosedV2,
        version: 2,
        upcast: { 1: (d) => ({ ...(d as object), currency: "USD" }) },
      },
      "deal.created": z.object({ dealId: z.string() }),
    });
    const typed = a.events(catalog);
    // @ts-expect-error amount must be a number
    await expect(typed.publish("deal.closed", { dealId: "D1", amount: "lots", currency: "EUR" })).rejects.toMatchObject(
      {
        code: "INVALID_ARGUMENT",
      },
    );
    // History written by an old agent (v1, no currency), and bad data from an untyped agent.
    await a.publish("deal.closed", { dealId: "D0", amount: 10 }, { v: 1 });
    await a.publish("deal.created", { dealId: 42 });
    await typed.publish("deal.closed", { dealId: "D1", amount: 20, currency: "EUR" });

    const got: { data: { dealId: string; amount: number; currency: string }; v?: number }[] = [];
    typed.subscribe("deal.closed", (e) => void got.push({ data: e.data, v: e.v }), { from: "start" });
    const created: unknown[] = [];
    typed.subscribe("deal.created", (e) => void created.push(e.data), { from: "start" });
    await eventually(() =>
      expect(got).toEqual([
        { data: { dealId: "D0", amount: 10, currency: "USD" }, v: 2 },
        { data: { dealId: "D1", amount: 20, currency: "EUR" }, v: 2 },
      ]),
    );
    await eventually(async () => expect(await collect(a, { stream: "main.dlq" })).toHaveLength(1));
    expect(created).toEqual([]);
    const [dead] = await collect(a, { stream: "main.dlq" });
    expect(dead?.data).toMatchObject({
      seq: 2,
      error: "deal.created fails its schema",
      issues: [{ path: ["dealId"] }],
    });
  });
});

describe("replay and the bounded window", () => {
  it("gives every subscription of one agent every event once, in order, however far apart they are", async () => {
    // An agent drops delivered events from its copy of the log (`Events.#shed`): only those
    // all its subscriptions have passed, and one that starts later reads them from the room.
    const team = room.team("apart");
    const writer = await room.agent("writer", { team });
    const reader = await room.agent("reader", { team });
    const fast: number[] = [];
    const slow: number[] = [];
    await reader.subscribe(">", (e) => void fast.push(e.seq), { from: "start" });
    await reader.subscribe(
      ">",
      async (e) => {
        slow.push(e.seq);
        await new Promise((r) => setTimeout(r, 1));
      },
      { from: "start" },
    );
    for (let i = 0; i < 3; i++)
      await writer.publishBatch(range(1, 100).map((n) => ({ type: "row.added", data: { n: i * 100 + n } })));
    await eventually(() => expect(fast).toEqual(range(1, 300)));
    await eventually(() => expect(slow).toEqual(range(1, 300)), { timeoutMs: 30_000 });
    // Both have passed 50: a new subscription from there reads what the agent dropped.
    const late: number[] = [];
    await reader.subscribe(">", (e) => void late.push(e.seq), { from: 50 });
    await writer.publishBatch(range(1, 10).map((n) => ({ type: "row.late", data: { n } })));
    await eventually(() => expect(slow).toEqual(range(1, 310)));
    await eventually(() => expect(late).toEqual(range(50, 310)));
    expect(fast).toEqual(range(1, 310));
  });

  it("replays from a seq, from a Date and from the archive after the window has moved", async () => {
    const team = room.team("replay");
    const a = await room.agent("writer", { team });
    for (let i = 0; i < 5; i++)
      await a.publishBatch(range(1, 1000).map((n) => ({ type: "row.added", data: { n: i * 1000 + n } })));
    await new Promise((r) => setTimeout(r, 30));
    const cut = new Date();
    await new Promise((r) => setTimeout(r, 30));
    await a.publishBatch(range(1, 10).map((n) => ({ type: "row.late", data: { n } })));

    // The live document keeps a bounded window; older events come from the archive.
    const reader = await room.agent("reader", { team });
    const fromStart: number[] = [];
    const sub = reader.subscribe(">", (e) => void fromStart.push(e.seq), { from: "start" });
    await sub.ready;
    await eventually(() => expect(fromStart).toEqual(range(1, 5010)), { timeoutMs: 30_000 });

    const fromSeq: number[] = [];
    await reader.subscribe("row.*", (e) => void fromSeq.push(e.seq), { from: 4990 }).ready;
    await eventually(() => expect(fromSeq).toEqual(range(4990, 5010)));

    const fromDate: StoredEvent[] = [];
    await reader.subscribe(">", (e) => void fromDate.push(e), { from: cut }).ready;
    await eventually(() => expect(seqs(fromDate)).toEqual(range(5001, 5010)));

    // A Date inside the archived range: find the ts of event 100 and start there.
    const [e100] = await collect(reader, { from: 100, limit: 1 });
    const archived: number[] = [];
    await reader.subscribe(">", (e) => void archived.push(e.seq), { from: new Date(e100?.ts ?? 0) }).ready;
    await eventually(() => expect(archived[0]).toBeLessThanOrEqual(100));
    await eventually(() => expect(archived.at(-1)).toBe(5010), { timeoutMs: 30_000 });

    // history() spans archive and live; type filters and limits apply.
    expect(seqs(await collect(reader, { from: 1000, to: 1030, types: ["row.*"] }))).toEqual(range(1000, 1030));
    expect(seqs(await collect(reader, { types: ["row.late"] }))).toEqual(range(5001, 5010));
    expect(await collect(reader, {})).toHaveLength(5010);

    // Tools read NDJSON over HTTP, archive included.
    const res = await room.fetch(`/parties/main/${team}/streams/main?from=10&limit=5`);
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    const lines = (await res.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as StoredEvent);
    expect(seqs(lines)).toEqual([10, 11, 12, 13, 14]);
    expect((await room.fetch(`/parties/main/${team}/streams/bad%20name`)).status).toBe(400);
  });
});
