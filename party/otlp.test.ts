/**
 * The room's OTLP export (`otlp.ts`) against a real HTTP receiver: spans arrive as OTLP/JSON
 * children of the traceparent they were given, and an endpoint that refuses connections
 * costs the room nothing but a warning.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { expect, it, vi } from "vitest";
import { OtlpExport } from "./otlp.ts";

const TRACE = "0af7651916cd43dd8448eb211c80319c";
const PARENT = "b7ad6b7169203331";

it("exports batched spans as OTLP/JSON, each a child of its item's traceparent", async () => {
  const bodies: { path: string; json: unknown }[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      bodies.push({ path: req.url ?? "", json: JSON.parse(body) });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as AddressInfo).port;
    const otlp = new OtlpExport(`http://127.0.0.1:${port}/`, { service: "crosstalk-room", team: "acme" });
    for (const seq of [1, 2]) {
      otlp.add({
        name: "append deal.closed",
        parent: `00-${TRACE}-${PARENT}-01`,
        startMs: 1000.5,
        endMs: 1002,
        attributes: { "crosstalk.seq": seq },
      });
    }
    otlp.add({
      name: "call draft",
      parent: `00-${TRACE}-${PARENT}-01`,
      startMs: 1,
      endMs: 2,
      attributes: {},
      error: "TIMEOUT",
    });
    await otlp.flush();
    expect(bodies).toHaveLength(1);
    expect(bodies[0]?.path).toBe("/v1/traces");
    const rs = (
      (bodies[0] as { json: unknown }).json as {
        resourceSpans: { resource: unknown; scopeSpans: { spans: Record<string, unknown>[] }[] }[];
      }
    ).resourceSpans[0];
    expect(rs?.resource).toEqual({ attributes: [{ key: "service.name", value: { stringValue: "crosstalk-room" } }] });
    const spans = rs?.scopeSpans[0]?.spans ?? [];
    expect(spans).toHaveLength(3);
    expect(spans[0]).toMatchObject({
      traceId: TRACE,
      parentSpanId: PARENT,
      name: "append deal.closed",
      kind: 2,
      startTimeUnixNano: "1000500000",
      endTimeUnixNano: "1002000000",
      status: { code: 1 },
    });
    expect(spans[0]?.attributes).toContainEqual({ key: "crosstalk.seq", value: { intValue: "1" } });
    expect(spans[0]?.attributes).toContainEqual({ key: "crosstalk.team", value: { stringValue: "acme" } });
    expect(spans[2]?.status).toEqual({ code: 2, message: "TIMEOUT" });
    const ids = spans.map((s) => s.spanId);
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}$/);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

it("an endpoint that refuses connections only logs a warning", async () => {
  const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
  try {
    const otlp = new OtlpExport("http://127.0.0.1:9", { service: "crosstalk-room", team: "acme" });
    otlp.add({ name: "append x", parent: `00-${TRACE}-${PARENT}-01`, startMs: 1, endMs: 2, attributes: {} });
    await expect(otlp.flush()).resolves.toBeUndefined();
    expect(warn).toHaveBeenCalledWith(expect.stringContaining("OTLP export"), expect.anything());
  } finally {
    warn.mockRestore();
  }
});
