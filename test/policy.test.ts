/**
 * Permissions as real clients live them, in-process (`in-process.ts`): the client refuses a
 * forbidden operation itself before touching its document or sending; a Yjs write the room
 * refuses (a policy change raced it) leaves the namespace equal to the room's and later
 * writes land; an agent allowed some types of a stream reads them through the room's
 * filtered feed, in order, resuming where it left off; a policy change applies to live
 * sessions at once; and the admin API.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Team } from "../client/index.ts";
import { CrosstalkError, type PolicyInput } from "../protocol/index.ts";
import { eventually } from "./harness.ts";
import { type InProcessRoom, inProcessRoom } from "./in-process.ts";

let r: InProcessRoom | null = null;
afterEach(async () => {
  await r?.close();
  r = null;
});

const fast = { timeoutMs: 3_000, intervalMs: 5 };

const policy = (roles: Record<string, { allow: string[]; deny?: string[] }>): PolicyInput => ({
  roles: { admin: { allow: [">"] }, ...roles },
});

const forbidden = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(CrosstalkError);
    expect((error as CrosstalkError).code).toBe("FORBIDDEN");
    return error as CrosstalkError;
  }
  throw new Error("expected FORBIDDEN");
};

const roomState = async (ns: string) => {
  const read = await (r as InProcessRoom).room.state.read(ns);
  return Object.fromEntries(Object.entries(read).map(([k, v]) => [k, v.value]));
};

describe("the client refuses locally", () => {
  it("a write it may not make: FORBIDDEN before the document is touched, nothing sent", async () => {
    r = await inProcessRoom({ policy: policy({ viewer: { allow: ["state.read", "stream.subscribe"] } }) });
    const admin = await r.agent({ agent: "ops", role: "admin" });
    const viewer = await r.agent({ agent: "v", role: "viewer" });
    expect(viewer.permissions?.allow).toEqual(["state.read", "stream.subscribe"]);
    admin.state("deals").set("D1", { amount: 1 });
    const deals = viewer.state("deals");
    await eventually(() => expect(deals.get("D1")).toEqual({ amount: 1 }), fast);
    const errors: unknown[] = [];
    viewer.on("error", (e) => errors.push(e));
    const before = deals.doc.store.clients.size;
    const error = forbidden(() => deals.set("D2", { amount: 2 }));
    expect(error.message).toContain("state.write deals");
    forbidden(() => deals.update("D1", { amount: 3 }));
    forbidden(() => deals.delete("D1"));
    forbidden(() => deals.transact(() => {}));
    await expect(deals.setIf("D1", 1, { amount: 4 })).rejects.toMatchObject({ code: "FORBIDDEN" });
    expect(deals.doc.store.clients.size).toBe(before);
    expect(deals.toJSON()).toEqual({ D1: { amount: 1 } });
    await new Promise((res) => setTimeout(res, 20));
    expect(errors).toEqual([]);
    expect(await roomState("deals")).toEqual({ D1: { amount: 1 } });
  });

  it("every other primitive it may not use", async () => {
    r = await inProcessRoom({ policy: policy({ viewer: { allow: ["state.read:public"] } }) });
    const viewer = await r.agent({ agent: "v", role: "viewer" });
    forbidden(() => viewer.state("deals"));
    await expect(viewer.publish("deal.closed", {})).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(viewer.subscribe(">", () => {})).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(viewer.subscribe(">", () => {}, { group: "g" })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(viewer.history().next()).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(viewer.consumers()).rejects.toMatchObject({ code: "FORBIDDEN" });
    forbidden(() => viewer.handle("quote", () => 1));
    await expect(viewer.call("x", "quote")).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(viewer.send({ role: "x" }, "notify")).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(viewer.lease("deal:D1")).rejects.toMatchObject({ code: "FORBIDDEN" });
    forbidden(() => viewer.setStatus({ busy: true }));
    await expect(viewer.policy()).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(viewer.trace("c", { streams: ["main"] })).rejects.toMatchObject({ code: "FORBIDDEN" });
  });
});

describe("a Yjs write the room refuses", () => {
  it("leaves the namespace equal to the room's (fresh doc, new client id), and later permitted writes land", async () => {
    r = await inProcessRoom({ policy: policy({ sales: { allow: ["state.read", "state.write"] } }) });
    const admin = await r.agent({ agent: "ops", role: "admin" });
    const writer = await r.agent({ agent: "w", role: "sales" });
    const deals = writer.state("deals");
    await deals.ready;
    deals.set("D1", { amount: 1 });
    await eventually(async () => expect(await roomState("deals")).toEqual({ D1: { amount: 1 } }), fast);
    const oldClient = deals.doc.clientID;
    const refusals: CrosstalkError[] = [];
    deals.on("refused", (e) => refusals.push(e));

    // The policy changes while the writer does not know yet: its write races the change.
    writer.pause();
    await admin.setPolicy(policy({ sales: { allow: ["state.read"] } }));
    deals.set("D2", { amount: 2 });
    deals.update("D1", { amount: 99 }); // pending behind the refused update, in Yjs terms
    await new Promise((res) => setTimeout(res, 30));
    expect(await roomState("deals")).toEqual({ D1: { amount: 1 } });
    writer.resume();

    await eventually(() => expect(refusals.map((e) => e.code)).toContain("FORBIDDEN"), fast);
    expect(refusals[0]?.message).toContain("state/deals");
    await deals.ready;
    await eventually(async () => expect(deals.toJSON()).toEqual(await roomState("deals")), fast);
    expect(deals.toJSON()).toEqual({ D1: { amount: 1 } });
    expect(deals.doc.clientID).not.toBe(oldClient);
    forbidden(() => deals.set("D3", { amount: 3 }));

    // Permitted again: the writer's next writes land in the room, and reach other agents.
    await admin.setPolicy(policy({ sales: { allow: ["state.read", "state.write"] } }));
    await eventually(() => expect(writer.permissions?.allow).toContain("state.write"), fast);
    deals.set("D4", { amount: 4 });
    deals.update("D1", { owner: "w" });
    await eventually(
      async () => expect(await roomState("deals")).toEqual({ D1: { amount: 1, owner: "w" }, D4: { amount: 4 } }),
      fast,
    );
    await eventually(() => expect(admin.state("deals").toJSON()).toEqual(deals.toJSON()), fast);
  });
});

describe("a policy change applies to live sessions", () => {
  it("a socket that loses read access to an open namespace stops receiving it", async () => {
    r = await inProcessRoom({ policy: policy({ sales: { allow: ["state.read", "state.write"] } }) });
    const admin = await r.agent({ agent: "ops", role: "admin" });
    const reader = await r.agent({ agent: "s", role: "sales" });
    const deals = reader.state("deals");
    await deals.ready;
    admin.state("deals").set("D1", { amount: 1 });
    await eventually(() => expect(deals.get("D1")).toEqual({ amount: 1 }), fast);
    const changed: string[] = [];
    reader.on("permissions", (p) => changed.push(p.allow.join()));
    await admin.setPolicy(policy({ sales: { allow: ["state.write"] } }));
    await eventually(() => expect(changed).toEqual(["state.write"]), fast);
    admin.state("deals").set("D2", { amount: 2 });
    await new Promise((res) => setTimeout(res, 30));
    expect(deals.get("D2")).toBeUndefined();
    expect(deals.toJSON()).toEqual({});
    await expect(deals.ready).rejects.toMatchObject({ code: "FORBIDDEN" });
    expect((r as InProcessRoom).room.hub.loaded("state/deals")?.subscribers.size).toBe(1);
  });

  it("methods it may no longer serve leave the roster", async () => {
    r = await inProcessRoom({ policy: policy({ legal: { allow: ["rpc.serve"] } }) });
    const admin = await r.agent({ agent: "ops", role: "admin" });
    const legal = await r.agent({ agent: "l", role: "legal" });
    legal.handle("contract", () => "ok");
    legal.handle("quote", () => 1);
    await eventually(() => expect(admin.agents().find((a) => a.agent === "l")?.methods).toHaveLength(2), fast);
    await admin.setPolicy(policy({ legal: { allow: ["rpc.serve:contract"] } }));
    await eventually(() => expect(admin.agents().find((a) => a.agent === "l")?.methods).toEqual(["contract"]), fast);
    await expect(admin.call("l", "quote")).rejects.toMatchObject({ code: "NO_ROUTE" });
    expect(await admin.call("l", "contract")).toBe("ok");
  });
});

describe("an agent allowed only some types of a stream", () => {
  const some = policy({
    analyst: { allow: ["stream.subscribe:main/deal.open", "stream.subscribe:main/deal.won"] },
    sales: { allow: ["stream.publish", "stream.subscribe"] },
  });

  const publishAll = async (publisher: Team, n: number, offset = 0) => {
    for (let i = 0; i < n; i++) {
      await publisher.publish(["deal.open", "deal.secret", "deal.won"][i % 3] as string, { i: i + offset });
    }
  };

  it("reads them through the room's filtered feed, in seq order, never the raw log document", async () => {
    r = await inProcessRoom({ policy: some });
    const sales = await r.agent({ agent: "s", role: "sales" });
    const analyst = await r.agent({ agent: "a", role: "analyst" });
    await publishAll(sales, 6);
    const seen: string[] = [];
    await analyst.subscribe(">", (e) => void seen.push(`${e.seq}:${e.type}`), { from: "start" });
    await publishAll(sales, 3, 6);
    await eventually(
      () =>
        expect(seen).toEqual(["1:deal.open", "3:deal.won", "4:deal.open", "6:deal.won", "7:deal.open", "9:deal.won"]),
      fast,
    );
    const session = (r as InProcessRoom).room.presence.get("a");
    expect([...(session?.docs ?? [])]).toEqual([]);
    const history = [];
    for await (const e of analyst.history()) history.push(e.type);
    expect(history).toEqual(["deal.open", "deal.won", "deal.open", "deal.won", "deal.open", "deal.won"]);
    const won: number[] = [];
    await analyst.subscribe("deal.won", (e) => void won.push(e.seq), { from: 4 });
    await eventually(() => expect(won).toEqual([6, 9]), fast);
  });

  it("resumes from its durable position after a reconnect", async () => {
    r = await inProcessRoom({ policy: some });
    const sales = await r.agent({ agent: "s", role: "sales" });
    let analyst = await r.agent({ agent: "a", role: "analyst" });
    await publishAll(sales, 3);
    const seen: number[] = [];
    await analyst.subscribe(">", (e) => void seen.push(e.seq), { from: "start", consumer: "reports" });
    await eventually(() => expect(seen).toEqual([1, 3]), fast);
    await eventually(
      async () => expect(await (r as InProcessRoom).room.consumers.position("main", "reports")).toBe(3),
      fast,
    );
    await analyst.close();
    await publishAll(sales, 3, 3);
    analyst = await r.agent({ agent: "a", role: "analyst" });
    await analyst.subscribe(">", (e) => void seen.push(e.seq), { consumer: "reports" });
    await eventually(() => expect(seen).toEqual([1, 3, 4, 6]), fast);
  });

  it("a whole-stream subscriber that loses one type goes on through a feed, from where it was", async () => {
    r = await inProcessRoom({ policy: policy({ sales: { allow: ["stream.publish", "stream.subscribe"] } }) });
    const admin = await r.agent({ agent: "ops", role: "admin" });
    const sales = await r.agent({ agent: "s", role: "sales" });
    const reader = await r.agent({ agent: "rd", role: "sales" });
    const seen: string[] = [];
    await reader.subscribe(">", (e) => void seen.push(`${e.seq}:${e.type}`), { from: "start" });
    await publishAll(sales, 3);
    await eventually(() => expect(seen).toHaveLength(3), fast);
    await admin.setPolicy(
      policy({ sales: { allow: ["stream.publish", "stream.subscribe"], deny: ["stream.subscribe:main/deal.secret"] } }),
    );
    await eventually(() => expect((r as InProcessRoom).room.presence.get("rd")?.docs.size).toBe(0), fast);
    await publishAll(sales, 3, 3);
    await eventually(
      () => expect(seen).toEqual(["1:deal.open", "2:deal.secret", "3:deal.won", "4:deal.open", "6:deal.won"]),
      fast,
    );
  });
});

describe("answers that list things", () => {
  it("a trace shows only the events, calls and messages the agent may see; streams it may not read are not named", async () => {
    r = await inProcessRoom({
      policy: policy({
        sales: { allow: ["stream.publish", "stream.subscribe", "rpc.call", "rpc.serve", "inbox.send"] },
        analyst: { allow: ["stream.subscribe:main/deal.open", "rpc.call:*/quote"] },
      }),
    });
    const sales = await r.agent({ agent: "s", role: "sales" });
    const legal = await r.agent({ agent: "l", role: "sales" });
    const analyst = await r.agent({ agent: "a", role: "analyst" });
    legal.handle("quote", () => 1);
    legal.handle("contract", () => 2);
    await eventually(() => expect(sales.agents().find((x) => x.agent === "l")?.methods).toHaveLength(2), fast);
    const work = { correlationId: "flow-9" };
    await sales.publish("deal.open", {}, work);
    await sales.publish("deal.secret", {}, work);
    await sales.publish("audit.entry", {}, { ...work, stream: "audit" });
    await sales.call("l", "quote", null, work);
    await sales.call("l", "contract", null, work);
    await sales.send("l", "notify", null, work);
    const all = await sales.trace("flow-9");
    const flat = (nodes: typeof all): string[] =>
      nodes.flatMap((n) => [`${n.kind}:${n.detail.type ?? n.detail.method}`, ...flat(n.children)]);
    expect(flat(all).sort()).toEqual(
      [
        "event:deal.open",
        "event:deal.secret",
        "event:audit.entry",
        "call:quote",
        "call:contract",
        "message:notify",
      ].sort(),
    );
    const seen = await analyst.trace("flow-9");
    expect(flat(seen).sort()).toEqual(["call:quote", "event:deal.open"]);
    expect(JSON.stringify(seen)).not.toContain("audit");
  });
});

describe("the admin API", () => {
  it("reads and replaces the policy, refusing a bad one with every problem and a stale revision with CONFLICT", async () => {
    r = await inProcessRoom();
    const admin = await r.agent({ agent: "ops", role: "admin" });
    const first = await admin.policy();
    expect(first.rev).toBe(0);
    expect(first.policy.roles["*"]?.allow).toContain("state.read");
    const bad = admin.setPolicy({ roles: { sales: { allow: ["stat.read", "state.read:a b"] } } });
    await expect(bad).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const issues = ((await bad.catch((e: CrosstalkError) => e)) as CrosstalkError).details as { issues: unknown[] };
    expect(issues.issues).toHaveLength(2);
    const next = await admin.setPolicy({ roles: { admin: { allow: [">"] } } }, { expectedRev: 0 });
    expect(next).toMatchObject({ rev: 1, updatedBy: "ops" });
    await expect(admin.setPolicy({ roles: {} }, { expectedRev: 0 })).rejects.toMatchObject({ code: "CONFLICT" });
    expect((await admin.policy()).rev).toBe(1);
    const res = await (r as InProcessRoom).room.request(new Request("http://room/parties/main/acme/policy"), {
      agent: "ops",
      role: "admin",
    });
    expect(((await res.json()) as { rev: number }).rev).toBe(1);
  });
});
