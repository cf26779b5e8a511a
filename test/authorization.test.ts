/**
 * The authorization matrix, in-process and fast: every primitive, tried by a bare socket
 * (raw frames and Yjs messages, no client-side checks in the way) or over HTTP, as an agent
 * whose permission is
 * - missing (its role allows every other action),
 * - denied by a deny rule (its role allows everything else),
 * - outside its token's narrowed scope,
 * and, for HTTP, with no principal at all. Each is refused with the right code, naming the
 * resource; nothing is applied; and nothing of the team's data reaches the refused agent.
 * The allowed case works. (Bad, expired and wrong-audience tokens are refused at the edge,
 * before the room: the identity half of #15 tests those.)
 */
import { afterEach, describe, expect, it } from "vitest";
import {
  ACTIONS,
  type Action,
  type ErrorBody,
  fieldKey,
  type Identity,
  type PolicyInput,
  type RoomFrame,
} from "../protocol/index.ts";
import { type InProcessRoom, inProcessRoom, type RawSocket } from "./in-process.ts";

/** Team data the refused agent must never see. */
const SECRET = "TOP-SECRET-4242";

/** The room, the agent serving `price` (`seed`) and one of role sales serving `notify`. */
type Env = { r: InProcessRoom; seed: RawSocket; sales: RawSocket };
type Attempt = { refused: ErrorBody | null; status?: number };
type Case = {
  primitive: string;
  /** The one rule the attempt needs (deny variant: exactly this is denied). */
  need: string;
  /** What the refusal must name. */
  names: string;
  attempt(s: RawSocket | null, env: Env, who: Identity | null): Promise<Attempt>;
  /** Did the attempt change anything? */
  applied(env: Env, s: RawSocket | null): Promise<boolean> | boolean;
  /** HTTP cases: reachable with no principal. */
  http?: boolean;
  /** The attempt needs another permission that shows the team's data anyway (writing needs reading). */
  readsAnyway?: boolean;
};

const refusalOf = (frame: RoomFrame | undefined): ErrorBody | null => (frame?.type === "error" ? frame.error : null);
const docRefusal = (s: RawSocket, doc: string): ErrorBody | null => {
  const frame = s.frames.find((f) => f.type === "error" && f.doc === doc);
  return frame?.type === "error" ? frame.error : null;
};
const ask = async (s: RawSocket | null, frame: Record<string, unknown>) =>
  ({ refused: refusalOf(await (s as RawSocket).ask(frame)) }) satisfies Attempt;
const http = async (env: Env, who: Identity | null, path: string): Promise<Attempt> => {
  const res = await env.r.room.request(new Request(`http://room/parties/main/acme/${path}`), who);
  const body = await res.text();
  if (res.ok) return { refused: null, status: res.status };
  expect(body).not.toContain(SECRET);
  return { refused: (JSON.parse(body) as { error: ErrorBody }).error, status: res.status };
};
const stateHas = async (env: Env, key: string) => Object.hasOwn(await env.r.room.state.read("deals"), key);
const fieldsHas = (env: Env, key: string) =>
  env.r.room.hub.loaded("state/deals")?.ydoc.getMap("fields").has(key) ?? false;
const head = async (env: Env) => (await env.r.room.streams.open("main")).head;

const cases: Case[] = [
  {
    primitive: "state: open (read) a namespace",
    need: "state.read:deals",
    names: "deals",
    attempt: async (s) => {
      s?.open("state/deals");
      await s?.settle();
      return { refused: docRefusal(s as RawSocket, "state/deals") };
    },
    applied: (_env, s) =>
      (s?.binary.some((b) => b.doc === "state/deals") ?? false) || (s?.text().includes(SECRET) ?? false),
  },
  {
    primitive: "state: write (Yjs update)",
    need: "state.write:deals",
    names: "deals",
    readsAnyway: true,
    attempt: async (s) => {
      s?.open("state/deals");
      await s?.settle();
      s?.write("state/deals", fieldKey("X1", "amount"), 1);
      await s?.settle();
      return { refused: docRefusal(s as RawSocket, "state/deals") };
    },
    applied: (env) => fieldsHas(env, fieldKey("X1", "amount")),
  },
  {
    primitive: "state: conditional write",
    need: "state.write:deals",
    names: "deals",
    attempt: (s) =>
      ask(s, { type: "state.setIf", ref: "q", ns: "deals", key: "X2", expectedVersion: 0, value: { a: 1 } }),
    applied: (env) => stateHas(env, "X2"),
  },
  {
    primitive: "streams: publish",
    need: "stream.publish:main/deal.closed",
    names: "main/deal.closed",
    attempt: (s) =>
      ask(s, { type: "publish", ref: "q", stream: "main", events: [{ id: "e-x", type: "deal.closed", data: 1 }] }),
    applied: async (env) => (await head(env)) > 1,
  },
  {
    primitive: "streams: sync the raw log document",
    need: "stream.subscribe:main",
    names: "main",
    attempt: async (s) => {
      s?.open("log/main");
      await s?.settle();
      return { refused: docRefusal(s as RawSocket, "log/main") };
    },
    applied: (_env, s) => s?.binary.some((b) => b.doc === "log/main") ?? false,
  },
  {
    primitive: "streams: a filtered feed",
    need: "stream.subscribe:main",
    names: "main",
    attempt: (s) => ask(s, { type: "feed.open", ref: "q", feed: "f", stream: "main", pattern: ">", from: 1 }),
    applied: (_env, s) => s?.frames.some((f) => f.type === "feed.events") ?? false,
  },
  {
    primitive: "streams: history",
    need: "stream.subscribe:main",
    names: "main",
    attempt: (s) => ask(s, { type: "history", ref: "q", stream: "main", from: 1, limit: 10 }),
    applied: (_env, s) => s?.frames.some((f) => f.type === "history.page") ?? false,
  },
  {
    primitive: "streams: list consumers",
    need: "stream.subscribe:main",
    names: "main",
    attempt: (s) => ask(s, { type: "consumers.list", ref: "q", stream: "main" }),
    applied: (_env, s) => s?.frames.some((f) => f.type === "consumers") ?? false,
  },
  {
    primitive: "streams: a durable consumer's position",
    need: "stream.subscribe:main",
    names: "main",
    attempt: (s) => ask(s, { type: "consumer.get", ref: "q", stream: "main", consumer: "billing" }),
    applied: (_env, s) => s?.frames.some((f) => f.type === "consumer.state") ?? false,
  },
  {
    primitive: "streams: join a consumer group",
    need: "stream.subscribe:main",
    names: "main/deal.*",
    attempt: (s) =>
      ask(s, {
        type: "group.join",
        ref: "q",
        stream: "main",
        group: "g",
        pattern: "deal.*",
        from: "start",
        maxAckPending: 10,
        ackWaitMs: 1000,
        maxDeliver: 3,
      }),
    applied: (_env, s) => s?.frames.some((f) => f.type === "group.deliver") ?? false,
  },
  {
    primitive: "streams: trace",
    need: "stream.subscribe:main",
    names: "main",
    attempt: (s) => ask(s, { type: "trace.get", ref: "q", correlationId: "flow-1", streams: ["main"] }),
    applied: (_env, s) => s?.frames.some((f) => f.type === "trace") ?? false,
  },
  {
    primitive: "leases: acquire",
    need: "lease.acquire:deal:D1",
    names: "deal:D1",
    attempt: (s) => ask(s, { type: "lease.acquire", ref: "q", name: "deal:D1", ttlMs: 10_000 }),
    applied: (env) => env.r.storage.data.has("lease|deal:D1"),
  },
  {
    primitive: "rpc: serve a method",
    need: "rpc.serve:quote",
    names: "quote",
    attempt: async (s) => {
      s?.send({ type: "rpc.handle", methods: ["quote"] });
      await s?.settle();
      const frame = s?.frames.find((f) => f.type === "error");
      return { refused: frame?.type === "error" ? frame.error : null };
    },
    applied: (env) => env.r.room.presence.get("w")?.methods.includes("quote") ?? false,
  },
  {
    primitive: "rpc: call",
    need: "rpc.call:seed/price",
    names: "seed/price",
    attempt: (s) => ask(s, { type: "rpc.call", ref: "q", to: "seed", method: "price", input: null, timeoutMs: 500 }),
    applied: (env) => env.seed.frames.some((f) => f.type === "rpc.request"),
  },
  {
    primitive: "inbox: send",
    need: "inbox.send:@sales/notify",
    names: "@sales/notify",
    attempt: (s) => ask(s, { type: "rpc.send", ref: "q", id: "m1", to: { role: "sales" }, method: "notify", input: 1 }),
    applied: (env) => env.sales.frames.some((f) => f.type === "rpc.message"),
  },
  {
    primitive: "presence: set status",
    need: "presence.write:w",
    names: "w",
    attempt: async (s) => {
      s?.send({ type: "presence.set", status: { busy: true } });
      await s?.settle();
      const frame = s?.frames.find((f) => f.type === "error");
      return { refused: frame?.type === "error" ? frame.error : null };
    },
    applied: (env) => env.r.room.presence.get("w")?.status.busy === true,
  },
  {
    primitive: "policy: read",
    need: "policy.admin",
    names: "policy",
    attempt: (s) => ask(s, { type: "policy.get", ref: "q" }),
    applied: (_env, s) => s?.frames.some((f) => f.type === "policy") ?? false,
  },
  {
    primitive: "policy: change",
    need: "policy.admin",
    names: "policy",
    attempt: (s) => ask(s, { type: "policy.set", ref: "q", policy: { roles: { worker: { allow: [">"] } } } }),
    applied: (env) => env.r.room.policy.current().updatedBy === "w",
  },
  {
    primitive: "http: metrics",
    need: "http.read:metrics",
    names: "metrics",
    http: true,
    attempt: (_s, env, who) => http(env, who, "metrics"),
    applied: () => false,
  },
  {
    primitive: "http: roster",
    need: "http.read:agents",
    names: "agents",
    http: true,
    attempt: (_s, env, who) => http(env, who, "agents"),
    applied: () => false,
  },
  {
    primitive: "http: a namespace",
    need: "state.read:deals",
    names: "deals",
    http: true,
    attempt: (_s, env, who) => http(env, who, "state/deals"),
    applied: () => false,
  },
  {
    primitive: "http: a stream's history",
    need: "stream.subscribe:main",
    names: "main",
    http: true,
    attempt: (_s, env, who) => http(env, who, "streams/main"),
    applied: () => false,
  },
  {
    primitive: "http: the policy",
    need: "policy.admin",
    names: "policy",
    http: true,
    attempt: (_s, env, who) => http(env, who, "policy"),
    applied: () => false,
  },
];

const ALL = Object.keys(ACTIONS) as Action[];
const actionOf = (rule: string) => rule.split(":")[0] as Action;
/** Every action but the one `need` names, bare (every resource). */
const allBut = (need: string) => ALL.filter((a) => a !== actionOf(need));

/** The seeding agent and the team's data; a role `auditor` whose rule names the secret (policy content). */
const basePolicy = (worker: { allow: string[]; deny?: string[] }): PolicyInput => ({
  roles: {
    seeder: { allow: [">"] },
    sales: { allow: [">"] },
    auditor: { allow: [`state.read:${SECRET}`] },
    worker: { allow: worker.allow, deny: worker.deny ?? [] },
  },
});

type Variant = { name: string; policy: (c: Case) => PolicyInput; scope?: (c: Case) => string[] };
const variants: Variant[] = [
  { name: "missing permission", policy: (c) => basePolicy({ allow: allBut(c.need) }) },
  { name: "denied by a deny rule", policy: (c) => basePolicy({ allow: [">"], deny: [c.need] }) },
  { name: "narrowed token scope", policy: () => basePolicy({ allow: [">"] }), scope: (c) => allBut(c.need) },
];

let env: Env | null = null;
afterEach(async () => {
  await env?.r.close();
  env = null;
});

async function setup(policy: PolicyInput): Promise<Env> {
  const r = await inProcessRoom({ policy });
  const seed = await r.socket({ agent: "seed", role: "seeder" });
  seed.open("state/deals");
  await seed.settle();
  seed.write("state/deals", fieldKey("D1", "terms"), SECRET);
  seed.send({ type: "rpc.handle", methods: ["price", "notify"] });
  await seed.ask({
    type: "publish",
    ref: "p",
    stream: "main",
    events: [{ id: "e1", type: "deal.closed", data: { terms: SECRET }, correlationId: "flow-1" }],
  });
  await seed.ask({ type: "consumer.ack", stream: "main", consumer: "billing", seq: 1 });
  await seed.settle();
  // A second seeding agent serving `notify` for role targets.
  const sales = await r.socket({ agent: "sales-1", role: "sales" });
  sales.send({ type: "rpc.handle", methods: ["notify"] });
  await sales.settle();
  env = { r, seed, sales };
  return env;
}

describe.each(variants)("refused: $name", (variant) => {
  it.each(cases.map((c) => [c.primitive, c] as const))("%s", async (_, c) => {
    const e = await setup(variant.policy(c));
    const who: Identity = { agent: "w", role: "worker", ...(variant.scope ? { scope: variant.scope(c) } : {}) };
    const s = c.http ? null : await e.r.socket(who);
    const { refused, status } = await c.attempt(s, e, who);
    expect(refused, "refused").not.toBeNull();
    expect(refused?.code).toBe("FORBIDDEN");
    expect(refused?.message).toContain(c.names);
    if (c.http) expect(status).toBe(403);
    expect(await c.applied(e, s)).toBe(false);
    if (!c.readsAnyway) expect(s?.text() ?? "").not.toContain(SECRET);
  });
});

describe("refused: no principal (HTTP; a socket without a token never reaches the room)", () => {
  it.each(cases.filter((c) => c.http).map((c) => [c.primitive, c] as const))("%s", async (_, c) => {
    const e = await setup(basePolicy({ allow: [">"] }));
    const { refused, status } = await c.attempt(null, e, null);
    expect(refused?.code).toBe("UNAUTHORIZED");
    expect(status).toBe(401);
  });
});

describe("allowed: exactly the permission it needs (and, where the view or write needs them, http.read and state.read)", () => {
  it.each(cases.map((c) => [c.primitive, c] as const))("%s", async (_, c) => {
    const allow = [c.need, "http.read", "state.read:deals"];
    const e = await setup(basePolicy({ allow }));
    const who: Identity = { agent: "w", role: "worker", scope: allow };
    const s = c.http ? null : await e.r.socket(who);
    const { refused, status } = await c.attempt(s, e, who);
    expect(refused).toBeNull();
    if (c.http) expect(status).toBe(200);
    else expect(await c.applied(e, s)).toBe(true);
  });
});
