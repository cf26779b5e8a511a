/**
 * Direct messages over a real room: typed contracts, deadlines and cancellation that reach
 * the callee, prompt TARGET_GONE, role routing that survives a dying instance, idempotent
 * calls across a cut socket and a room restart, progress, backpressure, causation, and
 * durable fire-and-forget sends to an offline agent.
 */
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { type CallContext, defineContract, type Json, type StoredEvent } from "../client/index.ts";
import { cuttableSocket as cuttable, eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const never = () => new Promise<never>(() => {});
const methodsOf = (agents: { agent: string; methods: string[] }[], id: string) =>
  agents.find((a) => a.agent === id)?.methods ?? [];

const contracts = defineContract({
  generateContract: {
    input: z.object({ dealId: z.string(), amount: z.number().positive() }),
    output: z.object({ contractId: z.string(), pages: z.number().int().default(1) }),
  },
});

describe("typed contracts", () => {
  it("serve and call through a typed proxy, validating input and output on the callee", async () => {
    const team = room.team("typed");
    const legal = await room.agent("legal-1", { team, role: "legal" });
    const sales = await room.agent("sales-1", { team });
    legal.serve(contracts, {
      generateContract: ({ dealId, amount }) =>
        amount > 1e6 ? ({ contractId: 42 } as never) : { contractId: `CTR-${dealId}` },
    });
    await eventually(() => expect(methodsOf(sales.agents(), "legal-1")).toEqual(["generateContract"]));

    const client = sales.client(contracts, { role: "legal" });
    const out = await client.generateContract({ dealId: "D1", amount: 500 });
    expect(out).toEqual({ contractId: "CTR-D1", pages: 1 });
    expectTypeOf(out).toEqualTypeOf<{ contractId: string; pages: number }>();
    // @ts-expect-error amount must be a number
    const wrong = client.generateContract({ dealId: "D1", amount: "500" });
    await expect(wrong).rejects.toMatchObject({ code: "INVALID_INPUT", details: [{ path: ["amount"] }] });
    await expect(client.generateContract({ dealId: "D2", amount: 2e6 })).rejects.toMatchObject({
      code: "INVALID_OUTPUT",
    });
    // Untyped callers get the same validation.
    await expect(sales.call("legal-1", "generateContract", { dealId: 7 })).rejects.toMatchObject({
      code: "INVALID_INPUT",
    });
  });
});

describe("deadlines, cancellation and failures", () => {
  it("delivers the timeout and the caller's abort to the callee's signal, and fails fast on NO_ROUTE", async () => {
    const team = room.team("deadline");
    const callee = await room.agent("slow", { team });
    const caller = await room.agent("caller", { team });
    const aborted: string[] = [];
    callee.handle("wait", (_input, ctx: CallContext) => {
      expect(ctx.deadline).toBeGreaterThan(Date.now() - 60_000);
      return new Promise((_, reject) =>
        ctx.signal.addEventListener("abort", () => {
          aborted.push(String((ctx.signal.reason as { code?: string }).code));
          reject(ctx.signal.reason);
        }),
      );
    });
    await eventually(() => expect(methodsOf(caller.agents(), "slow")).toEqual(["wait"]));

    await expect(caller.call("slow", "wait", {}, { timeoutMs: 200 })).rejects.toMatchObject({ code: "TIMEOUT" });
    const controller = new AbortController();
    const call = caller.call("slow", "wait", {}, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(call).rejects.toMatchObject({ code: "CANCELLED" });
    await eventually(() => expect(aborted.sort()).toEqual(["CANCELLED", "TIMEOUT"]));

    await expect(caller.call("nobody", "wait")).rejects.toMatchObject({ code: "NO_ROUTE" });
    await expect(caller.call("slow", "nothing")).rejects.toMatchObject({ code: "NO_ROUTE" });
    await expect(caller.call({ role: "ghosts" }, "wait")).rejects.toMatchObject({ code: "NO_ROUTE" });
    callee.handle("boom", () => {
      throw new Error("kaput");
    });
    await eventually(() => expect(methodsOf(caller.agents(), "slow")).toContain("boom"));
    const failure = await caller.call("slow", "boom").catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: "HANDLER_ERROR", message: "kaput" });
    expect(JSON.stringify(failure)).not.toContain("at ");
  });

  it("a handler that first reads its signal after the caller cancelled finds it aborted, with the reason", async () => {
    const team = room.team("late-signal");
    const callee = await room.agent("late", { team });
    const caller = await room.agent("caller", { team });
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const seen: { aborted: boolean; code: unknown }[] = [];
    callee.handle("wait", async (_input, ctx: CallContext) => {
      started();
      await released;
      seen.push({ aborted: ctx.signal.aborted, code: (ctx.signal.reason as { code?: unknown } | undefined)?.code });
    });
    callee.handle("ping", () => "pong");
    await eventually(() => expect(methodsOf(caller.agents(), "late")).toEqual(["wait", "ping"]));
    const controller = new AbortController();
    const call = caller.call("late", "wait", {}, { signal: controller.signal });
    await running;
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: "CANCELLED" });
    // The room's abort reaches the callee before this later call on the same socket.
    expect(await caller.call("late", "ping")).toBe("pong");
    release();
    await eventually(() => expect(seen).toEqual([{ aborted: true, code: "CANCELLED" }]));
  });

  it("fails with TARGET_GONE, not TIMEOUT, when the callee dies mid-call", async () => {
    const team = room.team("gone");
    const callee = await room.agent("doomed", { team });
    const caller = await room.agent("caller", { team });
    let started!: () => void;
    const running = new Promise<void>((r) => {
      started = r;
    });
    callee.handle("work", () => {
      started();
      return never();
    });
    await eventually(() => expect(methodsOf(caller.agents(), "doomed")).toEqual(["work"]));
    const call = caller.call("doomed", "work", {}, { timeoutMs: 60_000 });
    await running;
    await callee.close();
    await expect(call).rejects.toMatchObject({ code: "TARGET_GONE" });
  });

  it("refuses with OVERLOADED beyond the callee's in-flight cap, and relays progress", async () => {
    const team = room.team("busy");
    const callee = await room.agent("busy", { team });
    const caller = await room.agent("caller", { team });
    callee.setMaxInFlight(2);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    callee.handle("job", async (input, ctx) => {
      for (let i = 1; i <= 3; i++) ctx.progress({ step: i, of: 3 });
      await gate;
      return input;
    });
    await eventually(() => expect(methodsOf(caller.agents(), "busy")).toEqual(["job"]));
    const steps: unknown[] = [];
    const first = caller.call("busy", "job", 1, { onProgress: (p) => void steps.push(p) });
    const second = caller.call("busy", "job", 2);
    await eventually(() => expect(steps).toHaveLength(3));
    await expect(caller.call("busy", "job", 3)).rejects.toMatchObject({ code: "OVERLOADED" });
    release();
    expect(await Promise.all([first, second])).toEqual([1, 2]);
    expect(steps).toEqual([1, 2, 3].map((step) => ({ step, of: 3 })));
  });

  it("stamps the call's correlation and causation on what its handler publishes and calls", async () => {
    const team = room.team("causation");
    const a = await room.agent("a", { team });
    const b = await room.agent("b", { team });
    const c = await room.agent("c", { team });
    let seenByC: { correlationId?: string; callId?: string } = {};
    c.handle("leaf", (_i, ctx) => {
      seenByC = { correlationId: ctx.correlationId, callId: ctx.callId };
      return "leaf";
    });
    let bCallId: string | undefined;
    b.handle("middle", async (_i, ctx) => {
      bCallId = ctx.callId;
      await ctx.publish("work.started", {});
      return ctx.call("c", "leaf");
    });
    await eventually(() => expect(methodsOf(a.agents(), "c")).toEqual(["leaf"]));
    await eventually(() => expect(methodsOf(a.agents(), "b")).toEqual(["middle"]));
    expect(await a.call("b", "middle", null, { correlationId: "order-77" })).toBe("leaf");
    const events: StoredEvent[] = [];
    for await (const e of a.history({})) events.push(e);
    expect(events[0]).toMatchObject({ type: "work.started", correlationId: "order-77", causationId: bCallId });
    expect(seenByC.correlationId).toBe("order-77");
    expect(seenByC.callId).toBeDefined();
    expect(seenByC.callId).not.toBe(bCallId);
  });
});

describe("role routing", () => {
  it("spreads 1,000 calls over 3 instances and survives one of them dying", async () => {
    const team = room.team("roles");
    const instances = await Promise.all(
      ["gen-1", "gen-2", "gen-3"].map((id) => room.agent(id, { team, role: "contract" })),
    );
    const handled: Record<string, number> = { "gen-1": 0, "gen-2": 0, "gen-3": 0 };
    for (const inst of instances) {
      inst.handle("generate", async (input) => {
        await new Promise((r) => setTimeout(r, Math.random() * 4));
        handled[inst.agent] = (handled[inst.agent] ?? 0) + 1;
        return { n: input, by: inst.agent };
      });
    }
    const caller = await room.agent("caller", { team });
    await eventually(() => expect(caller.agents().filter((a) => a.methods.includes("generate"))).toHaveLength(3));
    const calls = Array.from({ length: 1000 }, (_, n) =>
      caller.call<{ n: number; by: string }>({ role: "contract" }, "generate", n, { retries: 5, timeoutMs: 30_000 }),
    );
    // gen-3 dies once it has answered some calls and while it holds others.
    await eventually(() => expect(handled["gen-3"]).toBeGreaterThan(60), { intervalMs: 1 });
    await instances[2]?.close();
    const results = await Promise.all(calls);
    expect(results.map((r) => r.n)).toEqual(Array.from({ length: 1000 }, (_, n) => n));
    for (const id of ["gen-1", "gen-2", "gen-3"]) expect(results.filter((r) => r.by === id).length).toBeGreaterThan(50);
    // Calls lost with gen-3 were retried on the others: every call has exactly one answer.
    expect(results.filter((r) => r.by === "gen-3").length).toBeLessThanOrEqual(handled["gen-3"] ?? 0);
    expect(Object.values(handled).reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1000);
  });
});

describe("idempotent calls", () => {
  it("run the handler once when the caller's socket is cut after sending, and after a room restart", async () => {
    const team = room.team("idem");
    const callee = await room.agent("ledger", { team });
    let runs = 0;
    let sent!: () => void;
    const requested = new Promise<void>((r) => {
      sent = r;
    });
    callee.handle("charge", async (input) => {
      runs++;
      sent();
      await new Promise((r) => setTimeout(r, 300));
      return { charged: input, receipt: `R-${runs}-${Math.random()}` };
    });
    const net = cuttable();
    const caller = await room.agent("billing", { team, WebSocket: net.WebSocket });
    await eventually(() => expect(methodsOf(caller.agents(), "ledger")).toEqual(["charge"]));

    const call = caller.call("ledger", "charge", 100, { idempotencyKey: "invoice-9" });
    await requested;
    net.cut(); // The request reached the callee; the caller's socket dies before the reply.
    const result = await call;
    expect(runs).toBe(1);
    expect(result).toMatchObject({ charged: 100 });

    // A later retry with the same key gets the stored result, also after a room restart.
    expect(await caller.call("ledger", "charge", 100, { idempotencyKey: "invoice-9" })).toEqual(result);
    await room.kill("SIGKILL");
    await room.restart();
    await Promise.all([caller.online(20_000), callee.online(20_000)]);
    expect(await caller.call("ledger", "charge", 100, { idempotencyKey: "invoice-9" })).toEqual(result);
    expect(runs).toBe(1);
    // Another key runs again.
    await eventually(() => expect(methodsOf(caller.agents(), "ledger")).toEqual(["charge"]));
    expect(await caller.call("ledger", "charge", 5, { idempotencyKey: "invoice-10" })).toMatchObject({ charged: 5 });
    expect(runs).toBe(2);
  });
});

describe("idempotent calls when the callee's link drops", () => {
  /** A handler that holds each call until the test lets it return, counting runs per agent. */
  function gated() {
    const runs: string[] = [];
    let entered!: () => void;
    let started = new Promise<void>((r) => {
      entered = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    return {
      runs,
      /** Resolves when a handler run has started (again after `rearm`). */
      started: () => started,
      release: () => release(),
      handler: (agent: string) => async (input: Json, ctx: CallContext) => {
        runs.push(agent);
        entered();
        await gate;
        return { approved: (input as { deal: string }).deal, key: ctx.idempotencyKey ?? null, by: agent };
      },
      rearm: () => {
        started = new Promise<void>((r) => {
          entered = r;
        });
      },
    };
  }

  /** legal-1 (role legal, on a breakable link) serving a gated `approve`; contract-1 calls it. */
  async function legalAndContract(prefix: string, callerSocket?: ReturnType<typeof cuttable>) {
    const team = room.team(prefix);
    const net = cuttable();
    const legal = await room.agent("legal-1", { team, role: "legal", WebSocket: net.WebSocket });
    const approve = gated();
    legal.handle("approve", approve.handler("legal-1"));
    const contract = await room.agent("contract-1", {
      team,
      ...(callerSocket && { WebSocket: callerSocket.WebSocket }),
    });
    await eventually(() => expect(methodsOf(contract.agents(), "legal-1")).toEqual(["approve"]));
    return { net, approve, contract };
  }

  it("answers with the handler's result, run once, when the callee drops just before returning", async () => {
    const { net, approve, contract } = await legalAndContract("indoubt");

    const options = { idempotencyKey: "approve-D1", retries: 10, timeoutMs: 30_000 };
    const call = contract.call({ role: "legal" }, "approve", { deal: "D1" }, options);
    await approve.started();
    net.cut();
    // A new call while legal-1 reconnects is retried, not failed with NO_ROUTE.
    const next = contract.call(
      { role: "legal" },
      "approve",
      { deal: "D2" },
      { ...options, idempotencyKey: "approve-D2" },
    );
    approve.release(); // The handler returns while its link is down.
    expect(await call).toEqual({ approved: "D1", key: "approve-D1", by: "legal-1" });
    expect(await next).toEqual({ approved: "D2", key: "approve-D2", by: "legal-1" });
    expect(approve.runs).toEqual(["legal-1", "legal-1"]);
    // A later retry is answered from the room's record.
    expect(await contract.call({ role: "legal" }, "approve", { deal: "D1" }, options)).toEqual(await call);
    expect(approve.runs).toHaveLength(2);
  });

  it("runs once when the answer was written to the socket but never reached the room", async () => {
    const { net, approve, contract } = await legalAndContract("lostreply");

    const call = contract.call(
      { role: "legal" },
      "approve",
      { deal: "D7" },
      { idempotencyKey: "approve-D7", retries: 10 },
    );
    await approve.started();
    net.cutOnSend((text) => text.includes('"rpc.result"'));
    approve.release();
    expect(await call).toEqual({ approved: "D7", key: "approve-D7", by: "legal-1" });
    expect(approve.runs).toEqual(["legal-1"]);
  });

  it("runs once when the caller's link drops at the same time as the callee's", async () => {
    const callerNet = cuttable();
    const { net: calleeNet, approve, contract } = await legalAndContract("bothcut", callerNet);

    const call = contract.call(
      { role: "legal" },
      "approve",
      { deal: "D3" },
      { idempotencyKey: "approve-D3", retries: 10 },
    );
    await approve.started();
    calleeNet.cut();
    callerNet.cut();
    approve.release();
    expect(await call).toEqual({ approved: "D3", key: "approve-D3", by: "legal-1" });
    expect(approve.runs).toEqual(["legal-1"]);
  });

  it("waits for the instance that ran the call instead of running it on another instance of the role", async () => {
    const team = room.team("twoinst");
    const nets = { "legal-1": cuttable(), "legal-2": cuttable() };
    const approve = gated();
    for (const id of ["legal-1", "legal-2"] as const) {
      const inst = await room.agent(id, { team, role: "legal", WebSocket: nets[id].WebSocket });
      inst.handle("approve", approve.handler(id));
    }
    const contract = await room.agent("contract-1", { team });
    await eventually(() => expect(contract.agents().filter((a) => a.methods.includes("approve"))).toHaveLength(2));

    const options = { idempotencyKey: "approve-D5", retries: 10, timeoutMs: 30_000 };
    const first = contract.call({ role: "legal" }, "approve", { deal: "D5" }, options);
    await approve.started();
    const ran = approve.runs[0] as "legal-1" | "legal-2";
    nets[ran].down(); // Cut mid-handler, and kept away for a while.
    await eventually(() => expect(contract.agents().map((a) => a.agent)).not.toContain(ran));
    // A retry of the same call while the instance is away joins it; the other instance is idle.
    const retry = contract.call({ role: "legal" }, "approve", { deal: "D5" }, options);
    await new Promise((r) => setTimeout(r, 500));
    expect(approve.runs).toEqual([ran]);
    approve.release();
    nets[ran].up();
    const answer = { approved: "D5", key: "approve-D5", by: ran };
    expect(await first).toEqual(answer);
    expect(await retry).toEqual(answer);
    expect(approve.runs).toEqual([ran]);
  });

  it("still answers NO_ROUTE at once for a target that never existed", async () => {
    const team = room.team("ghost");
    const caller = await room.agent("caller", { team });
    const started = Date.now();
    await expect(caller.call({ role: "ghosts" }, "approve", {}, { retries: 10 })).rejects.toMatchObject({
      code: "NO_ROUTE",
    });
    await expect(caller.call("nobody", "approve", {}, { retries: 10 })).rejects.toMatchObject({ code: "NO_ROUTE" });
    // No backoff was spent: each failed on its first answer.
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe("fire-and-forget sends", () => {
  it("deliver to an offline agent exactly once when it connects, also after a room restart", async () => {
    const team = room.team("inbox");
    const first = await room.agent("notifier", { team });
    first.handle("notify", () => {});
    const sender = await room.agent("sender", { team });
    await eventually(() => expect(methodsOf(sender.agents(), "notifier")).toEqual(["notify"]));
    await first.close();
    await eventually(() => expect(sender.agents().map((a) => a.agent)).toEqual(["sender"]));

    const sent = await Promise.all([1, 2, 3].map((n) => sender.send("notifier", "notify", { n })));
    expect(sent.map((s) => s.recipients)).toEqual([["notifier"], ["notifier"], ["notifier"]]);
    // Resending a message id never delivers it twice.
    await sender.send("notifier", "notify", { n: 1 }, { id: sent[0]?.id });

    await room.kill("SIGKILL");
    await room.restart();
    await sender.online(20_000);

    const got: unknown[] = [];
    const from: string[] = [];
    const second = await room.agent("notifier", { team });
    second.handle("notify", (input, ctx) => {
      got.push(input);
      from.push(ctx.from);
    });
    await eventually(() => expect(got).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]));
    expect(from).toEqual(["sender", "sender", "sender"]);

    // Acknowledged messages are gone: a fresh connection gets nothing.
    await second.close();
    const third = await room.agent("notifier", { team });
    const again: unknown[] = [];
    third.handle("notify", (input) => void again.push(input));
    // A new message queues behind anything still in the inbox, so seeing it alone proves there was nothing.
    await sender.send("notifier", "notify", { ping: true });
    await eventually(() => expect(again).toEqual([{ ping: true }]));

    // A role send reaches every live member; with none live it fails at once.
    await expect(sender.send({ role: "nobody" }, "notify", {})).rejects.toMatchObject({ code: "NO_ROUTE" });
  });
});
