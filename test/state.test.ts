/**
 * Shared state over the in-process room (the real `TeamRoom`): convergence under random
 * interleavings and disconnects (fast-check), field-level merges even when agents create the
 * same entity at once, conditional writes and leases arbitrated by the room, and schemas.
 * Projections across a SIGKILL restart are in restart.test.ts and the stock y-websocket
 * client in foundation.test.ts, on the real server.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { Team } from "../client/index.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

let room: TestRoom;
const cuttable = () => room.cuttableSocket();
beforeAll(() => {
  room = createTestRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const sameEverywhere = async (teams: Team[], ns: string) => {
  await eventually(
    () => {
      const [first, ...rest] = teams.map((t) => JSON.stringify(t.state(ns).toJSON()));
      for (const other of rest) expect(other).toBe(first);
    },
    { timeoutMs: 20_000 },
  );
  return teams[0]?.state(ns).toJSON() ?? {};
};

describe("convergence", () => {
  it("keeps both fields when two agents create the same entity concurrently", async () => {
    const team = room.team("create");
    const a = await room.agent("a", { team });
    const b = await room.agent("b", { team });
    // Both write before their namespace has synced: neither knows the other's entity.
    a.state("deals").set("D1", { amount: 1, customer: "Globex" });
    b.state("deals").update("D1", { legalReview: "done" });
    const merged = await sameEverywhere([a, b], "deals");
    expect(merged.D1).toEqual({ amount: 1, customer: "Globex", legalReview: "done" });
    expect(a.state("deals").meta("D1")?.version).toBeGreaterThanOrEqual(1);
  });

  it("converges under random interleavings of set/update/delete with random disconnects (property)", async () => {
    const op = fc.record({
      agent: fc.integer({ min: 0, max: 4 }),
      kind: fc.constantFrom("set", "update", "delete", "cut"),
      key: fc.constantFrom("K1", "K2", "K3"),
      field: fc.constantFrom("f1", "f2", "f3"),
      value: fc.integer({ min: 0, max: 9 }),
    });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 3, max: 5 }),
        fc.array(op, { minLength: 10, maxLength: 40 }),
        async (n, ops) => {
          const team = room.team(`prop${run++}`);
          const nets = Array.from({ length: n }, () => cuttable());
          const agents = await Promise.all(
            nets.map((net, i) => room.agent(`p${i}`, { team, WebSocket: net.WebSocket })),
          );
          await Promise.all(agents.map((t) => t.state("s").ready));
          for (const o of ops) {
            const agent = agents[o.agent % n] as Team;
            const ns = agent.state("s");
            if (o.kind === "set") ns.set(o.key, { [o.field]: o.value });
            else if (o.kind === "update") ns.update(o.key, { [o.field]: o.value });
            else if (o.kind === "delete") ns.delete(o.key);
            else nets[o.agent % n]?.cut();
            if (o.value % 3 === 0) await new Promise((r) => setTimeout(r, 2));
          }
          await Promise.all(agents.map((t) => t.online(20_000)));
          await sameEverywhere(agents, "s");
          await Promise.all(agents.map((t) => t.close()));
        },
      ),
      { numRuns: 6, seed: 4242 },
    );
  });

  it("preserves every agent's field when each writes its own field of shared entities, offline or not (property)", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            agent: fc.integer({ min: 0, max: 2 }),
            key: fc.constantFrom("A", "B"),
            value: fc.nat(99),
            cut: fc.boolean(),
          }),
          {
            minLength: 5,
            maxLength: 30,
          },
        ),
        async (ops) => {
          const team = room.team(`fields${run++}`);
          const nets = [cuttable(), cuttable(), cuttable()];
          const agents = await Promise.all(
            nets.map((net, i) => room.agent(`w${i}`, { team, WebSocket: net.WebSocket })),
          );
          const last = new Map<string, number>();
          for (const o of ops) {
            agents[o.agent]?.state("s").update(o.key, { [`by${o.agent}`]: o.value });
            last.set(`${o.key}.by${o.agent}`, o.value);
            if (o.cut) nets[o.agent]?.cut();
          }
          await Promise.all(agents.map((t) => t.online(20_000)));
          const state = await sameEverywhere(agents, "s");
          for (const [path, value] of last) {
            const [key, field] = path.split(".") as [string, string];
            expect(state[key]?.[field]).toBe(value);
          }
          await Promise.all(agents.map((t) => t.close()));
        },
      ),
      { numRuns: 5, seed: 7 },
    );
  });
});

describe("what a CRDT cannot do alone", () => {
  it("lets exactly one of 10 concurrent conditional writers win", async () => {
    const team = room.team("setif");
    const agents = await Promise.all(Array.from({ length: 10 }, (_, i) => room.agent(`c${i}`, { team })));
    await Promise.all(agents.map((t) => t.state("contracts").ready));
    const results = await Promise.allSettled(
      agents.map((t) => t.state("contracts").setIf("customer-1", 0, { active: `contract-of-${t.agent}` })),
    );
    const winners = results.filter((r) => r.status === "fulfilled");
    expect(winners).toHaveLength(1);
    expect((winners[0] as PromiseFulfilledResult<{ version: number }>).value).toEqual({ version: 1 });
    for (const r of results.filter((r) => r.status === "rejected")) {
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: "CONFLICT", details: { version: 1 } });
    }
    const winner = agents[results.findIndex((r) => r.status === "fulfilled")] as Team;
    await sameEverywhere(agents, "contracts");
    expect(agents[3]?.state("contracts").get("customer-1")).toEqual({ active: `contract-of-${winner.agent}` });
    expect(agents[3]?.state("contracts").meta("customer-1")).toMatchObject({ version: 1, updatedBy: winner.agent });
    // The next conditional write must name version 1.
    await expect(agents[0]?.state("contracts").setIf("customer-1", 0, { active: "x" })).rejects.toMatchObject({
      code: "CONFLICT",
    });
    expect(await agents[0]?.state("contracts").setIf("customer-1", 1, { active: "renewed" })).toEqual({ version: 2 });
  });

  it("gives a lease to one agent at a time, expires it after its holder disconnects, and reports loss", async () => {
    const team = room.team("lease");
    const nets = Array.from({ length: 6 }, () => cuttable());
    const agents = await Promise.all(nets.map((net, i) => room.agent(`l${i}`, { team, WebSocket: net.WebSocket })));
    const attempts = await Promise.allSettled(agents.map((t) => t.lease("DEAL-001", { ttlMs: 1500 })));
    const held = attempts.filter((a) => a.status === "fulfilled");
    expect(held).toHaveLength(1);
    const holderIndex = attempts.findIndex((a) => a.status === "fulfilled");
    const holder = agents[holderIndex] as Team;
    const lease = (held[0] as PromiseFulfilledResult<Awaited<ReturnType<Team["lease"]>>>).value;
    for (const a of attempts.filter((a) => a.status === "rejected")) {
      expect((a as PromiseRejectedResult).reason).toMatchObject({
        code: "CONFLICT",
        details: { holder: holder.agent },
      });
    }
    // Auto-renewal keeps it past its TTL while the holder lives.
    await new Promise((r) => setTimeout(r, 2000));
    expect(lease.held).toBe(true);
    const other = agents[(holderIndex + 1) % agents.length] as Team;
    await expect(other.lease("DEAL-001", { ttlMs: 1500 })).rejects.toMatchObject({ code: "CONFLICT" });

    // The holder's network dies: the lease stays held until its TTL runs out, then another
    // takes it, and the cut-off holder knows it lost it.
    nets[holderIndex]?.down();
    await expect(other.lease("DEAL-001", { ttlMs: 1500 })).rejects.toMatchObject({ code: "CONFLICT" });
    const next = await eventually(() => other.lease("DEAL-001", { ttlMs: 300, autoRenew: false }), {
      timeoutMs: 5000,
      intervalMs: 100,
    });
    expect(next.token).toBeGreaterThan(lease.token);
    // The cut-off holder learns it from its own clock, not from a room it cannot reach: by the
    // time another agent holds the lease, it has stopped (give or take clock estimate error).
    const stillHeld = new Promise((r) => setTimeout(() => r("still held"), 1000));
    expect(await Promise.race([lease.lost, stillHeld])).toBe("expired");
    // Not renewed: it expires, and its holder is told.
    expect(await next.lost).toBe("expired");
    const third = agents[(holderIndex + 2) % agents.length] as Team;
    expect((await third.lease("DEAL-001")).token).toBeGreaterThan(next.token);
    // Closing gives the lease back at once, without waiting for its TTL.
    await third.close();
    const fourth = agents[(holderIndex + 3) % agents.length] as Team;
    expect((await fourth.lease("DEAL-001", { ttlMs: 60_000 })).held).toBe(true);
  });
});

describe("schemas", () => {
  it("refuses invalid writes on the writer and reports invalid remote data without throwing", async () => {
    const team = room.team("schema");
    const Deal = z.object({ stage: z.enum(["open", "won", "lost"]), amount: z.number().nonnegative() });
    const typed = await room.agent("typed", { team });
    const untyped = await room.agent("untyped", { team });
    const deals = typed.state("deals", { schema: Deal });
    const invalid: { key: string; issues: unknown }[] = [];
    deals.on("invalid", (report) => void invalid.push(report));
    await deals.ready;
    // @ts-expect-error stage must be one of the enum values
    expect(() => deals.set("D1", { stage: "maybe", amount: 1 })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => deals.update("D1", { amount: -5 } as never)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(deals.has("D1")).toBe(false);
    deals.set("D2", { stage: "open", amount: 10 });

    untyped.state("deals").set("D3", { stage: "teleported", amount: "lots" });
    untyped.state("deals").set("D4", { stage: "won", amount: 99 });
    await eventually(() => expect(invalid.map((i) => i.key)).toEqual(["D3"]));
    expect(JSON.stringify(invalid[0]?.issues)).toContain("stage");
    expect(deals.get("D3")).toBeUndefined();
    expect(deals.raw("D3")).toEqual({ stage: "teleported", amount: "lots" });
    await eventually(() => expect(deals.get("D4")).toEqual({ stage: "won", amount: 99 }));
    expect(
      deals
        .entries()
        .map(([k]) => k)
        .sort(),
    ).toEqual(["D2", "D4"]);
  });
});
