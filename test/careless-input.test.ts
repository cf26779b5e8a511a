/**
 * What a new user gets for careless input: a typed CrosstalkError at once, never a raw
 * TypeError or a wait — and a subscription that, once awaited, sees everything published
 * after it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrosstalkError } from "../client/index.ts";
import { connect } from "../client/node.ts";
import { eventually, freePort, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

describe("careless input gets a typed error at once", () => {
  it("refuses a circular or absurdly deep value in publish with INVALID_ARGUMENT", async () => {
    const team = await room.agent("careless", { team: room.team("careless") });
    const circular: Record<string, unknown> = { deal: "D1" };
    circular.self = circular;
    const failure = await team.publish("deal.closed", circular).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CrosstalkError);
    expect(failure).toMatchObject({ code: "INVALID_ARGUMENT" });

    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    await expect(team.publish("deal.closed", deep)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    // Nothing was stored, and the next publish works.
    expect((await team.publish("deal.closed", { deal: "D2" })).seq).toBe(1);
  });

  it("refuses a negative or fractional timeout and negative retries with INVALID_ARGUMENT, not TIMEOUT", async () => {
    const team = await room.agent("careless-rpc", { team: room.team("careless-rpc") });
    for (const timeoutMs of [-1, 0, 1.5, Number.NaN, 4_000_000]) {
      await expect(team.call("anyone", "work", {}, { timeoutMs })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    await expect(team.call("anyone", "work", {}, { retries: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("says OFFLINE at once when nothing listens at the host, without waiting out the connect timeout", async () => {
    const port = await freePort();
    const started = Date.now();
    const failure = await connect({
      host: `127.0.0.1:${port}`,
      team: "acme",
      agent: "nobody-home",
      role: "agent",
      connectTimeoutMs: 15_000,
    }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CrosstalkError);
    expect(failure).toMatchObject({ code: "OFFLINE" });
    expect((failure as Error).message).toContain("ECONNREFUSED");
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe("await subscribe", () => {
  it("resolves once the subscription is live, so the very next publish from another agent is seen", async () => {
    const team = room.team("awaited");
    const reader = await room.agent("reader", { team });
    const writer = await room.agent("writer", { team });
    for (let round = 0; round < 5; round++) {
      const seen: number[] = [];
      const sub = await reader.subscribe("tick", (e) => void seen.push((e.data as { n: number }).n));
      expect(typeof (sub as { then?: unknown }).then).toBe("undefined");
      await writer.publish("tick", { n: round });
      await eventually(() => expect(seen).toEqual([round]));
      sub.unsubscribe();
    }
  });

  it("rejects with the room's refusal when the subscription cannot start", async () => {
    const team = room.team("awaited-fail");
    const member = await room.agent("member", { team });
    await member.subscribe("job", () => {}, { group: "workers" });
    await expect(member.subscribe("job", () => {}, { group: "workers" })).rejects.toMatchObject({ code: "CONFLICT" });
  });
});

describe("after close", () => {
  it("fails every operation at once with CLOSED instead of waiting for a connection that will never come", async () => {
    const team = await room.agent("closer", { team: room.team("closed") });
    await team.close();
    const started = Date.now();
    await expect(team.publish("x", {})).rejects.toMatchObject({ code: "CLOSED" });
    await expect(team.publishBatch([{ type: "x", data: {} }])).rejects.toMatchObject({ code: "CLOSED" });
    await expect(team.call("anyone", "work", {})).rejects.toMatchObject({ code: "CLOSED" });
    await expect(team.send("anyone", "work", {})).rejects.toMatchObject({ code: "CLOSED" });
    await expect(team.consumers("main")).rejects.toMatchObject({ code: "CLOSED" });
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});

describe("HTTP", () => {
  it("answers a path that is not valid percent-encoding with 400 INVALID_ARGUMENT, not a server error", async () => {
    const res = await room.fetch(`/parties/main/${room.team("http")}/state/%E0%A4%A`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "INVALID_ARGUMENT" } });
  });
});
