/**
 * Each per-connection limit: its typed error (or close code) at its threshold, and nothing
 * above it applied. On the in-process room with small limits.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import * as Y from "yjs";
import { CLOSE_CODES } from "../client/index.ts";
import { chunkBinary, PROTOCOL_VERSION, type RoomFrame } from "../protocol/index.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";
import { openDoc, type Raw, rawSocket, updateFrame } from "./raw-socket.ts";

const LIMITS = {
  maxOpenDocs: 3,
  maxCallsInFlight: 2,
  publishRate: 5,
  publishBurst: 10,
  maxConnectionsPerAgent: 2,
  maxSubscriptions: 2,
  errorBudget: 20,
  maxUpdateBytes: 32 * 1024,
  maxDocDepth: 8,
};
let room: TestRoom;
beforeAll(() => {
  room = createTestRoom({ limits: LIMITS });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const url = (team: string, agent: string, extra = "") =>
  `ws://${room.host}/parties/main/${team}?agent=${agent}&role=agent&v=${PROTOCOL_VERSION}${extra}`;
const errorsOf = (r: Raw) => r.frames.filter((f): f is Extract<RoomFrame, { type: "error" }> => f.type === "error");

it("open documents: the fourth is refused with LIMIT_EXCEEDED and never synced", async () => {
  const team = room.team("docs");
  const evil = await rawSocket(room, url(team, "evil"));
  for (const ns of ["a", "b", "c", "d"]) evil.send(openDoc(`state/${ns}`));
  await eventually(() => expect(errorsOf(evil)).toHaveLength(1));
  expect(errorsOf(evil)[0]).toMatchObject({
    doc: "state/d",
    error: { code: "LIMIT_EXCEEDED", details: { limit: "maxOpenDocs", max: 3 } },
  });
  // Closing one frees a place.
  evil.send(JSON.stringify({ type: "doc.close", doc: "state/a" }));
  evil.send(openDoc("state/d"));
  await new Promise((r) => setTimeout(r, 50));
  expect(errorsOf(evil)).toHaveLength(1);
  evil.close();
});

it("calls in flight: the third waiting call is refused; publish rate: above the bucket RATE_LIMITED, nothing appended", async () => {
  const team = room.team("calls");
  const slow = await room.agent("slow", { team });
  slow.handle("wait", () => new Promise((r) => setTimeout(() => r("done"), 300)));
  const caller = await room.agent("caller", { team });
  await eventually(() => expect(caller.agents().find((a) => a.agent === "slow")?.methods).toEqual(["wait"]));
  const calls = [1, 2, 3].map(() => caller.call("slow", "wait", null).catch((e) => e.code));
  expect(await Promise.all(calls)).toEqual(["done", "done", "LIMIT_EXCEEDED"]);
  expect(await caller.call("slow", "wait", null)).toBe("done");

  const results = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      caller
        .publish("tick", { i })
        .then((r) => r.seq)
        .catch((e) => e.code),
    ),
  );
  // One frame of 12 events: more than the burst of 10, refused whole.
  expect(results.every((r) => r === "RATE_LIMITED")).toBe(true);
  const ok = await caller.publishBatch(Array.from({ length: 10 }, (_, i) => ({ type: "tick", data: { i } })));
  expect(ok.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await expect(caller.publish("tick", {})).rejects.toMatchObject({
    code: "RATE_LIMITED",
    details: { limit: "publishRate" },
  });
  await new Promise((r) => setTimeout(r, 400)); // 5/s refills 2 tokens
  expect((await caller.publish("tick", {})).seq).toBe(11);
  const history = [];
  for await (const e of caller.history()) history.push(e.seq);
  expect(history).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
});

it("subscriptions: the third feed or group is refused; connections per agent: the third socket is closed", async () => {
  const team = room.team("subs");
  const evil = await rawSocket(room, url(team, "evil"));
  const feed = (id: string) =>
    JSON.stringify({ type: "feed.open", ref: id, feed: id, stream: "main", pattern: ">", from: 1 });
  evil.send(feed("f1"));
  evil.send(
    JSON.stringify({
      type: "group.join",
      ref: "g1",
      stream: "main",
      group: "g",
      pattern: ">",
      from: "start",
      maxAckPending: 1,
      ackWaitMs: 1000,
      maxDeliver: 3,
    }),
  );
  evil.send(feed("f1")); // reopening costs nothing
  evil.send(feed("f2"));
  await eventually(() => expect(errorsOf(evil)).toHaveLength(1));
  expect(errorsOf(evil)[0]).toMatchObject({
    ref: "f2",
    error: { code: "LIMIT_EXCEEDED", details: { limit: "maxSubscriptions" } },
  });
  evil.close();

  const yjs = (n: number) => rawSocket(room, url(team, "owner", `&doc=state/x&_pk=p${n}`));
  const [a, b] = [await yjs(1), await yjs(2)];
  const c = await yjs(3).catch(() => null);
  const closed = c ? await c.closed : { code: -1 };
  expect(closed.code).toBe(CLOSE_CODES.TooManyConnections.code);
  expect(a.open && b.open).toBe(true);
});

it("frame size, update size and depth: refused; the bad update closes the socket with BadUpdate; the error budget closes with TooManyErrors", async () => {
  const team = room.team("sizes");
  const honest = await room.agent("honest", { team });
  const deals = honest.state("deals");
  await deals.ready;
  deals.set("D1", { amount: 1 });
  await eventually(async () =>
    expect(Object.keys(await (await room.fetch(`/parties/main/${team}/state/deals`)).json())).toContain("D1"),
  );
  const before = Y.encodeStateAsUpdate(deals.doc);

  let evil = await rawSocket(room, url(team, "evil"));
  evil.send("x".repeat(1_000_001));
  await eventually(() =>
    expect(errorsOf(evil)[0]?.error).toMatchObject({ code: "TOO_LARGE", details: { limit: "maxFrameBytes" } }),
  );
  // A chunked update above maxUpdateBytes: refused while reassembling.
  for (const part of chunkBinary(updateFrame("state/deals", new Uint8Array(40 * 1024)))) evil.send(part);
  await eventually(() => expect(errorsOf(evil)[1]?.error.code).toBe("TOO_LARGE"));
  // Types nested deeper than maxDocDepth: refused, and the socket closed with BadUpdate.
  evil.send(openDoc("state/deals"));
  const d = new Y.Doc();
  Y.applyUpdate(d, before);
  const sv = Y.encodeStateVector(d);
  let m = d.getMap("fields").set("deep\u001fx", new Y.Map<unknown>());
  for (let i = 0; i < 10; i++) m = m.set("m", new Y.Map<unknown>());
  evil.send(updateFrame("state/deals", Y.encodeStateAsUpdate(d, sv)));
  expect((await evil.closed).code).toBe(CLOSE_CODES.BadUpdate.code);
  expect(errorsOf(evil).at(-1)?.error.message).toMatch(/nest deeper than 8/);

  // An update with a dependency the room lacks (it would leave pending structs): same.
  evil = await rawSocket(room, url(team, "evil"));
  evil.send(openDoc("state/deals"));
  const ups: Uint8Array[] = [];
  const e = new Y.Doc();
  Y.applyUpdate(e, before);
  e.on("update", (u: Uint8Array) => ups.push(u));
  e.getMap("fields").set("p\u001f1", 1);
  e.getMap("fields").set("p\u001f2", 2);
  evil.send(updateFrame("state/deals", ups[1] as Uint8Array));
  expect((await evil.closed).code).toBe(CLOSE_CODES.BadUpdate.code);
  expect(errorsOf(evil).at(-1)?.error.message).toMatch(/start at|nobody has/);

  // Garbage: 20 refused frames and the socket is closed with TooManyErrors.
  evil = await rawSocket(room, url(team, "evil"));
  for (let i = 0; i < 30; i++) evil.send(`garbage ${i}`);
  expect((await evil.closed).code).toBe(CLOSE_CODES.TooManyErrors.code);
  expect(errorsOf(evil)).toHaveLength(LIMITS.errorBudget);

  // Nothing of it landed.
  deals.update("D1", { stage: "won" });
  const reader = await room.agent("reader", { team });
  const copy = reader.state("deals");
  await copy.ready;
  await eventually(() => expect(copy.get("D1")).toEqual({ amount: 1, stage: "won" }));
  expect(Y.encodeStateAsUpdate(copy.doc)).toEqual(Y.encodeStateAsUpdate(deals.doc));
  expect(copy.keys()).toEqual(["D1"]);
});
