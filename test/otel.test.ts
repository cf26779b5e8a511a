/**
 * OpenTelemetry end to end: agents traced with `crosstalk/otel` (the OpenTelemetry JS SDK's
 * OTLP/HTTP exporter) and a real `partykit dev` room exporting its own hops
 * (`CROSSTALK_OTLP_ENDPOINT`), both to an OTLP/HTTP receiver in this test. One deal's chain —
 * deal published → a clerk's subscriber calls legal → legal publishes the contract → billing's
 * subscriber publishes the invoice — must arrive as one trace whose spans are complete and
 * correctly parented, the room's hop of each item a span of its own.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { traceFrom, traceIdOf } from "../client/index.ts";
import { type Instrumented, instrument } from "../client/otel.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

type ReceivedSpan = { service: string; traceId: string; spanId: string; parentSpanId?: string; name: string };

let receiver: Server;
let url = "";
const received: ReceivedSpan[] = [];
let room: RoomServer;

beforeAll(async () => {
  // An OTLP/HTTP receiver (JSON encoding, what both exporters send).
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      const doc = JSON.parse(body) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] };
          scopeSpans: { spans: Omit<ReceivedSpan, "service">[] }[];
        }[];
      };
      for (const rs of doc.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "?";
        for (const ss of rs.scopeSpans) for (const s of ss.spans) received.push({ ...s, service });
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  room = await startRoom({ vars: { CROSSTALK_OTLP_ENDPOINT: url } });
});

afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
  await new Promise((r) => receiver?.close(r));
});

/** The span tree as lines `service: name`, indented by depth, siblings sorted. */
function render(spans: ReceivedSpan[]): string[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    const children = spans
      .filter((s) => (parent === undefined ? !s.parentSpanId || !ids.has(s.parentSpanId) : s.parentSpanId === parent))
      .sort((a, b) => `${a.service}: ${a.name}`.localeCompare(`${b.service}: ${b.name}`));
    for (const s of children) {
      lines.push(`${"  ".repeat(depth)}${s.service}: ${s.name}`);
      walk(s.spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines;
}

it("exports one deal's deal → contract → invoice chain as one complete, correctly parented trace", async () => {
  const team = room.team("otel");
  const sales = await room.agent("sales-1", { team, role: "sales" });
  const clerk = await room.agent("clerk-1", { team, role: "clerk" });
  const legal = await room.agent("legal-1", { team, role: "legal" });
  const billing = await room.agent("billing-1", { team, role: "billing" });
  const traced: Instrumented[] = [sales, clerk, legal, billing].map((t) => instrument(t, { url: `${url}/v1/traces` }));

  legal.handle("draft", async (input, ctx) => {
    const contract = { contract: `C-${(input as { deal: string }).deal}` };
    await ctx.publish("contract.signed", contract);
    return contract;
  });
  await clerk.subscribe(
    "deal.*",
    async (e) => {
      await clerk.call({ role: "legal" }, "draft", e.data, traceFrom(e));
    },
    { consumer: "clerk", from: "start" },
  ).ready;
  let invoiced = false;
  await billing.subscribe(
    "contract.*",
    async (e) => {
      await billing.publish("invoice.issued", e.data as { contract: string }, traceFrom(e));
      invoiced = true;
    },
    { consumer: "billing", from: "start" },
  ).ready;
  await eventually(() => expect(sales.agents().find((a) => a.agent === "legal-1")?.methods).toEqual(["draft"]));

  await sales.publish("deal.closed", { deal: "D42" }, { correlationId: "deal-42" });
  await eventually(() => expect(invoiced).toBe(true));
  await Promise.all(traced.map((t) => t.flush()));

  const traceId = traceIdOf("deal-42");
  const expected = [
    "sales-1: publish deal.closed",
    "  clerk-1: consume deal.closed",
    "    clerk-1: call draft",
    "      crosstalk-room: call draft",
    "      legal-1: handle draft",
    "        legal-1: publish contract.signed",
    "          billing-1: consume contract.signed",
    "            billing-1: publish invoice.issued",
    "              crosstalk-room: append invoice.issued",
    "          crosstalk-room: append contract.signed",
    "  crosstalk-room: append deal.closed",
  ];
  // The room flushes its spans every second.
  await eventually(() => expect(received.filter((s) => s.traceId === traceId)).toHaveLength(expected.length), {
    timeoutMs: 15_000,
  });
  const spans = received.filter((s) => s.traceId === traceId);
  expect(render(spans)).toEqual(expected);
  // Complete: one root, and every other span's parent is in the trace.
  const ids = new Set(spans.map((s) => s.spanId));
  expect(spans.filter((s) => !s.parentSpanId)).toHaveLength(1);
  for (const s of spans) if (s.parentSpanId) expect(ids.has(s.parentSpanId), `${s.name}'s parent`).toBe(true);
  expect(ids.size).toBe(spans.length);

  // The wire agrees: each stored event's traceparent names its publish span.
  const history = [];
  for await (const e of sales.history({})) history.push(e);
  for (const type of ["deal.closed", "contract.signed", "invoice.issued"]) {
    const event = history.find((e) => e.type === type);
    const span = spans.find((s) => s.name === `publish ${type}`);
    expect(event?.traceparent).toBe(`00-${traceId}-${span?.spanId}-01`);
  }
  await Promise.all(traced.map((t) => t.shutdown()));
});
