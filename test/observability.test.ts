/**
 * Observability over the in-process room (the real `TeamRoom`, its HTTP views reached through
 * `room.fetch`; testing-kit.test.ts checks they answer the same through the real server):
 * Prometheus metrics, the HTTP views of agents, state and streams, W3C trace context on
 * everything, and the causal tree of one piece of work.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { PROTOCOL_VERSION, type StoredEvent, type TraceNode, traceFrom, traceIdOf } from "../client/index.ts";
import { Metrics } from "../party/metrics.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

let room: TestRoom;
beforeAll(() => {
  room = createTestRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;
const metric = (text: string, line: RegExp) => text.split("\n").find((l) => line.test(l));

it("exposes Prometheus metrics and HTTP views of agents, state and streams", async () => {
  const team = room.team("metrics");
  const sales = await room.agent("sales-1", { team, role: "sales" });
  const legal = await room.agent("legal-1", { team, role: "legal" });
  legal.handle("review", () => "ok");
  legal.handle("fail", () => {
    throw new Error("no");
  });
  await eventually(() => expect(sales.agents().find((a) => a.agent === "legal-1")?.methods).toHaveLength(2));
  for (let i = 0; i < 5; i++) await sales.publish("deal.created", { i });
  await sales.call("legal-1", "review");
  await sales.call("legal-1", "review");
  await expect(sales.call("legal-1", "fail")).rejects.toMatchObject({ code: "HANDLER_ERROR" });
  const sub = sales.subscribe("deal.*", () => {}, { consumer: "auditor", from: "start" });
  await sub.ready;
  sales.state("deals").set("D1", { stage: "open" });
  await eventually(async () =>
    expect((await (await room.fetch(`/parties/main/${team}/state/deals`)).json()).D1).toBeDefined(),
  );
  // A refused frame from a raw socket.
  const raw = new room.WebSocket(`ws://${room.host}/parties/main/${team}?agent=raw&v=${PROTOCOL_VERSION}`);
  await new Promise((r) => raw.addEventListener("message", r, { once: true }));
  raw.send("not json");
  await new Promise((r) => raw.addEventListener("message", r, { once: true }));
  raw.close();

  const res = await room.fetch(`/parties/main/${team}/metrics`);
  expect(res.headers.get("content-type")).toContain("text/plain");
  const text = await res.text();
  expect(metric(text, /^crosstalk_agents\{role="sales"\} 1$/)).toBeDefined();
  expect(metric(text, /^crosstalk_events_published_total\{stream="main"\} 5$/)).toBeDefined();
  expect(metric(text, /^crosstalk_rpc_calls_total\{method="review",outcome="ok"\} 2$/)).toBeDefined();
  expect(metric(text, /^crosstalk_rpc_calls_total\{method="fail",outcome="HANDLER_ERROR"\} 1$/)).toBeDefined();
  expect(metric(text, /^crosstalk_rpc_call_duration_seconds_count\{method="review"\} 2$/)).toBeDefined();
  expect(metric(text, /^crosstalk_refused_frames_total\{code="BAD_FRAME"\} 1$/)).toBeDefined();
  expect(metric(text, /^crosstalk_frames_in_total\{type="publish"\} \d+$/)).toBeDefined();
  await eventually(async () => {
    const again = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
    expect(
      metric(again, /^crosstalk_consumer_lag\{stream="main",consumer="auditor",kind="durable"\} 0$/),
    ).toBeDefined();
  });
  expect(metric(text, /^crosstalk_doc_size_bytes\{doc="log\/main"\} \d+$/)).toBeDefined();
  expect(metric(text, /^# TYPE crosstalk_rpc_call_duration_seconds histogram$/)).toBeDefined();

  const agents = (await (await room.fetch(`/parties/main/${team}/agents`)).json()) as { agent: string; role: string }[];
  expect(agents.map((a) => [a.agent, a.role]).sort()).toEqual([
    ["legal-1", "legal"],
    ["sales-1", "sales"],
  ]);
  const state = await (await room.fetch(`/parties/main/${team}/state/deals`)).json();
  expect(state.D1).toMatchObject({ value: { stage: "open" }, meta: { version: 1, updatedBy: "sales-1" } });
  expect((await room.fetch(`/parties/main/${team}/nothing`)).status).toBe(404);
});

it("stamps trace context everywhere and returns the causal tree of one piece of work", async () => {
  const team = room.team("trace");
  const a = await room.agent("orders", { team });
  const b = await room.agent("planner", { team });
  const c = await room.agent("stock", { team });
  const d = await room.agent("mailer", { team });
  d.handle("notify", () => {});
  c.handle("reserve", async (input, ctx) => {
    expect(ctx.trace.correlationId).toBe("order-1");
    await ctx.publish("stock.reserved", input);
    await ctx.send("mailer", "notify", { reserved: true });
    return { reserved: true };
  });
  await eventually(() => expect(b.agents().find((x) => x.agent === "stock")?.methods).toEqual(["reserve"]));
  // From "end" means from the head once the subscription is ready: wait for it before publishing.
  await b.subscribe("order.*", async (e) => {
    await b.call("stock", "reserve", { sku: "X" }, traceFrom(e));
  }).ready;
  const placed = await a.publish("order.placed", { sku: "X" }, { correlationId: "order-1" });
  const unrelated = await a.publish("order.placed", { sku: "Y" });

  const seen: StoredEvent[] = [];
  for await (const e of a.history({})) seen.push(e);
  await eventually(async () => {
    seen.length = 0;
    for await (const e of a.history({})) seen.push(e);
    expect(seen.map((e) => e.type)).toContain("stock.reserved");
  });
  for (const e of seen) expect(e.traceparent).toMatch(TRACEPARENT);
  const reserved = seen.find((e) => e.type === "stock.reserved");
  expect(reserved?.traceparent?.split("-")[1]).toBe(traceIdOf("order-1"));
  // An event published without a correlation id starts its own piece of work.
  expect(seen.find((e) => e.id === unrelated.id)?.correlationId).toBe(unrelated.id);

  await eventually(async () => {
    const tree = await a.trace("order-1");
    const shape = (n: TraceNode): unknown => [n.kind, n.detail.type ?? n.detail.method, n.children.map(shape)];
    expect(tree.map(shape)).toEqual([
      [
        "event",
        "order.placed",
        [
          [
            "call",
            "reserve",
            [
              ["event", "stock.reserved", []],
              ["message", "notify", []],
            ],
          ],
        ],
      ],
    ]);
    expect(tree[0]?.id).toBe(placed.id);
  });
});

it("exports what the shipped alerts watch: NO_ROUTE by role, connects, inboxes, sockets, limits, memory, positions", async () => {
  const team = room.team("alerting");
  const sales = await room.agent("sales-1", { team, role: "sales" });
  await expect(sales.call({ role: "legal" }, "review", {}, { retries: 0 })).rejects.toMatchObject({ code: "NO_ROUTE" });
  await expect(sales.send({ role: "legal" }, "notify", {})).rejects.toMatchObject({ code: "NO_ROUTE" });
  // A call to one agent id is not a role's gap: not counted by role.
  await expect(sales.call("nobody", "review", {}, { retries: 0 })).rejects.toMatchObject({ code: "NO_ROUTE" });
  await sales.send("ghost", "notify", { n: 1 });
  await sales.send("ghost", "notify", { n: 2 });
  const flappy = await room.agent("flappy", { team });
  await flappy.close();
  await room.agent("flappy", { team });
  await sales.publish("job.queued", {});
  await sales.subscribe("job.*", () => new Promise<never>(() => {}), { consumer: "stuck", from: "start" }).ready;
  await sales.publish("job.queued", {});

  const text = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
  expect(metric(text, /^crosstalk_rpc_no_route_total\{role="legal"\} 2$/)).toBeDefined();
  expect(text).not.toMatch(/crosstalk_rpc_no_route_total\{role="nobody"\}/);
  expect(metric(text, /^crosstalk_agent_connects_total\{agent="flappy"\} 2$/)).toBeDefined();
  expect(metric(text, /^crosstalk_inbox_depth\{agent="ghost"\} 2$/)).toBeDefined();
  // A live agent with an empty inbox reads 0.
  expect(metric(text, /^crosstalk_inbox_depth\{agent="sales-1"\} 0$/)).toBeDefined();
  expect(metric(text, /^crosstalk_agent_sockets\{agent="sales-1"\} 1$/)).toBeDefined();
  expect(metric(text, /^crosstalk_limit\{limit="maxConnectionsPerAgent"\} 16$/)).toBeDefined();
  expect(metric(text, /^crosstalk_memory_limit_bytes 134217728$/)).toBeDefined();
  expect(Number(metric(text, /^crosstalk_memory_bytes \d+$/)?.split(" ")[1])).toBeGreaterThan(0);
  await eventually(async () => {
    const again = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
    expect(metric(again, /^crosstalk_consumer_lag\{stream="main",consumer="stuck",kind="durable"\} 2$/)).toBeDefined();
    expect(
      metric(again, /^crosstalk_consumer_position\{stream="main",consumer="stuck",kind="durable"\} 0$/),
    ).toBeDefined();
  });
});

it("a counter whose labels a client chooses keeps a bounded number of series", () => {
  const metrics = new Metrics();
  for (let i = 0; i < 300; i++) metrics.noRoute.inc({ role: `r${i}` });
  const lines = metrics
    .render([])
    .split("\n")
    .filter((l) => l.startsWith("crosstalk_rpc_no_route_total{"));
  expect(lines).toHaveLength(257);
  expect(lines).toContain('crosstalk_rpc_no_route_total{role="_other"} 44');
});
