/**
 * Memory bounded by activity (`party/doc-cache.ts`): a document nobody syncs is unloaded
 * after the room's idle time, and everything built on it behaves as before once it loads
 * again — a state namespace read and written, a stream replayed from its first seq (archive
 * and window alike) with its dedupe intact, a durable consumer resuming after its position.
 * The same scenarios run on the in-process room and on a real `partykit dev`, with the idle
 * time set short (`docIdleMs` / `CROSSTALK_DOC_IDLE_MS`). The room says what it unloaded in
 * `/metrics` (a document it holds has a `crosstalk_doc_size_bytes` sample).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StoredEvent } from "../client/index.ts";
import { createTestRoom, eventually, type RoomServer, startRoom, type TestRoom } from "./harness.ts";

const IDLE_MS = 300;
/** A small live window, so a few thousand events reach the archive. */
const WINDOW = 1024;

type Host = TestRoom | RoomServer;

/** Whether the room of `team` holds document `doc` in memory now. Each request also lets it sweep. */
async function loaded(room: Host, team: string, doc: string): Promise<boolean> {
  const text = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
  return text.split("\n").some((line) => line.startsWith(`crosstalk_doc_size_bytes{doc="${doc}"}`));
}

/** The `/metrics` lines of `team`'s room that start with `prefix`. */
async function metricLines(room: Host, team: string, prefix: string): Promise<string[]> {
  const text = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
  return text.split("\n").filter((line) => line.startsWith(prefix));
}

async function unloadedEventually(room: Host, team: string, doc: string): Promise<void> {
  await eventually(async () => expect(await loaded(room, team, doc)).toBe(false), { timeoutMs: 20_000 });
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function scenarios(host: () => Host): void {
  it("a state namespace is read and written as before after its document was unloaded", async () => {
    const room = host();
    const team = room.team("unload-state");
    const writer = await room.agent("writer", { team });
    const deals = writer.state("deals");
    await deals.ready;
    deals.set("D1", { stage: "open", amount: 10 });
    deals.set("D2", { stage: "won" });
    deals.delete("D2");
    await eventually(async () =>
      expect(await (await room.fetch(`/parties/main/${team}/state/deals`)).json()).toHaveProperty("D1"),
    );
    expect(await loaded(room, team, "state/deals")).toBe(true);
    await writer.close();
    await unloadedEventually(room, team, "state/deals");

    // Synced again: loaded from storage, with everything written before (and nothing deleted back).
    const reader = await room.agent("reader", { team });
    const again = reader.state("deals");
    await again.ready;
    expect(again.get("D1")).toEqual({ stage: "open", amount: 10 });
    expect(again.has("D2")).toBe(false);
    again.update("D1", { stage: "won" });
    again.set("D3", { stage: "new" });
    await eventually(async () =>
      expect(await (await room.fetch(`/parties/main/${team}/state/deals`)).json()).toHaveProperty("D3"),
    );
    await reader.close();
    await unloadedEventually(room, team, "state/deals");

    // Read over HTTP straight from storage, then by a third agent.
    const body = (await (await room.fetch(`/parties/main/${team}/state/deals`)).json()) as Record<
      string,
      { value: unknown }
    >;
    expect(Object.keys(body).sort()).toEqual(["D1", "D3"]);
    expect(body.D1?.value).toEqual({ stage: "won", amount: 10 });
    const third = await room.agent("third", { team });
    const view = third.state("deals");
    await view.ready;
    expect(view.toJSON()).toEqual({ D1: { stage: "won", amount: 10 }, D3: { stage: "new" } });
  });

  it("a stream is replayed from its first seq after its window was unloaded; dedupe still holds", async () => {
    const room = host();
    const team = room.team("unload-stream");
    const pub = await room.agent("pub", { team });
    const N = 3 * WINDOW + 100;
    for (let n = 1; n <= N; n += 200)
      await pub.publishBatch(
        range(n, Math.min(N, n + 199)).map((i) => ({ type: "tick", data: { i }, options: { id: `e-${i}` } })),
      );
    // Archived while the stream was loaded: remembered as a hash, recalled from its segment's index.
    expect(await pub.publish("tick", { i: 1 }, { id: "e-1" })).toMatchObject({ seq: 1, duplicate: true });
    await pub.close();
    await unloadedEventually(room, team, "log/main");

    const sub = await room.agent("sub", { team });
    const seen: StoredEvent[] = [];
    await sub.subscribe(">", (e) => void seen.push(e), { from: "start" }).ready;
    await eventually(() => expect(seen.length).toBe(N), { timeoutMs: 20_000 });
    expect(seen.map((e) => e.seq)).toEqual(range(1, N));
    expect(seen.map((e) => (e.data as { i: number }).i)).toEqual(range(1, N));
    await sub.close();
    await unloadedEventually(room, team, "log/main");

    // Re-publishing ids the room stored before the unload (archived and in the window) appends nothing.
    const again = await room.agent("pub2", { team });
    const archived = await again.publish("tick", { i: 5 }, { id: "e-5" });
    const live = await again.publish("tick", { i: N }, { id: `e-${N}` });
    expect(archived).toMatchObject({ seq: 5, duplicate: true });
    expect(live).toMatchObject({ seq: N, duplicate: true });
    const fresh = await again.publish("tick", { i: N + 1 }, { id: `e-${N + 1}` });
    expect(fresh).toMatchObject({ seq: N + 1, duplicate: false });
  });

  it("a durable consumer resumes right after its position once the stream is loaded again", async () => {
    const room = host();
    const team = room.team("unload-consumer");
    const pub = await room.agent("pub", { team });
    for (const i of range(1, 10)) await pub.publish("order.placed", { i }, { stream: "orders" });
    const first = await room.agent("projector", { team });
    const handled: number[] = [];
    await first.subscribe("order.*", (e) => void handled.push(e.seq), {
      stream: "orders",
      consumer: "proj",
      from: "start",
    }).ready;
    await eventually(() => expect(handled).toEqual(range(1, 10)));
    await eventually(async () =>
      expect((await pub.consumers("orders")).consumers.find((c) => c.name === "proj")).toMatchObject({ acked: 10 }),
    );
    await first.close();
    await pub.close();
    await unloadedEventually(room, team, "log/orders");

    const later = await room.agent("pub-later", { team });
    for (const i of range(11, 15)) await later.publish("order.placed", { i }, { stream: "orders" });
    await later.close();
    await unloadedEventually(room, team, "log/orders");
    // Its head and the consumer's lag are still reported, and reporting them loads nothing.
    expect(await metricLines(room, team, 'crosstalk_stream_head_seq{stream="orders"}')).toEqual([
      'crosstalk_stream_head_seq{stream="orders"} 15',
    ]);
    expect(await metricLines(room, team, 'crosstalk_consumer_lag{stream="orders",consumer="proj"')).toEqual([
      'crosstalk_consumer_lag{stream="orders",consumer="proj",kind="durable"} 5',
    ]);
    expect(await loaded(room, team, "log/orders")).toBe(false);

    const second = await room.agent("projector", { team });
    const resumed: number[] = [];
    await second.subscribe("order.*", (e) => void resumed.push(e.seq), { stream: "orders", consumer: "proj" }).ready;
    await eventually(() => expect(resumed).toEqual(range(11, 15)));
  });
}

describe("in-process room", () => {
  let room: TestRoom;
  beforeAll(() => {
    room = createTestRoom({ docIdleMs: IDLE_MS, streams: { window: WINDOW } });
  });
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });
  scenarios(() => room);
});

describe("partykit dev", () => {
  let room: RoomServer;
  beforeAll(async () => {
    room = await startRoom({
      vars: { CROSSTALK_DOC_IDLE_MS: String(IDLE_MS), CROSSTALK_LOG_WINDOW: String(WINDOW) },
    });
  });
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });
  scenarios(() => room);
});
