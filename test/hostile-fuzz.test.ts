/**
 * fast-check fuzzing: a hostile client throws random and mutated frames at a room where
 * honest agents work — text (random, ill-typed JSON, mutated frames, forbidden publishes),
 * binary (random bytes, truncated and bit-flipped Yjs updates, updates under an honest
 * agent's client id, updates that leave pending structs, deep nesting, oversized and
 * chunked-oversized frames, documents it may not write). Afterwards every document and
 * stream is byte-for-byte what the honest agents made, they saw no error, the room answers
 * normally, and each hostile socket the room closed was closed with BadUpdate or
 * TooManyErrors (the last burst is text garbage only, which spends the error budget). Volume
 * on the in-process room (`FUZZ_BURSTS` × 1,000 frames, default 20); a shorter run on a real
 * `partykit dev`.
 */
import fc from "fast-check";
import * as encoding from "lib0/encoding";
import { afterAll, expect, it } from "vitest";
import * as Y from "yjs";
import { CLOSE_CODES, type StoredEvent, type Team } from "../client/index.ts";
import { chunkBinary, PROTOCOL_VERSION, parseClientFrame } from "../protocol/index.ts";
import { createTestRoom, eventually, type RoomServer, startRoom, type TestHost } from "./harness.ts";
import { openDoc, rawSocket, updateFrame } from "./raw-socket.ts";

const LIMITS = { maxUpdateBytes: 64 * 1024 };
const EVIL_POLICY = {
  roles: {
    "*": {
      allow: ["state.read", "state.write", "stream.subscribe", "stream.publish", "rpc.call", "rpc.serve"],
      deny: [],
    },
    evil: { allow: ["state.read", "state.write:deals", "stream.subscribe"], deny: ["stream.publish"] },
    admin: { allow: [">"], deny: [] },
  },
};

const hosts: TestHost[] = [];
afterAll(async () => {
  for (const h of hosts) await h[Symbol.asyncDispose]();
});

type World = {
  room: TestHost;
  team: string;
  alice: Team;
  bob: Team;
  errors: unknown[];
  events: StoredEvent[];
  url: () => Promise<string>;
};

async function world(room: TestHost, token?: (agent: string, role: string, team: string) => Promise<string>) {
  const team = room.team("fuzz");
  const admin = await room.agent("ops", { team, role: "admin" });
  await admin.setPolicy(EVIL_POLICY);
  const alice = await room.agent("alice", { team });
  const bob = await room.agent("bob", { team });
  const errors: unknown[] = [];
  for (const t of [alice, bob]) t.on("error", (e) => void errors.push(e));
  const events: StoredEvent[] = [];
  await bob.subscribe(">", (e) => void events.push(e), { from: "start" });
  alice.handle("add", (input) => {
    const { a, b } = input as { a: number; b: number };
    return a + b;
  });
  await eventually(() => expect(bob.agents().find((a) => a.agent === "alice")?.methods).toEqual(["add"]));
  let n = 0;
  const url = async () => {
    const agent = `evil-${++n}`;
    const auth = token ? `&token=${await token(agent, "evil", team)}` : "";
    return `ws://${room.host}/parties/main/${team}?agent=${agent}&role=evil&v=${PROTOCOL_VERSION}${auth}`;
  };
  return { room, team, alice, bob, errors, events, url } satisfies World;
}

/** Honest work between bursts: entity writes, an event, a call. */
async function honestWork(w: World, round: number): Promise<void> {
  const deals = w.alice.state("deals");
  await deals.ready;
  deals.set(`D${round}`, { amount: round, nested: { tags: ["a", "b"], at: round } });
  const bobDeals = w.bob.state("deals");
  await bobDeals.ready;
  if (round > 1) bobDeals.update(`D${round - 1}`, { stage: "won" });
  await w.alice.publish("deal.touched", { round });
  expect(await w.bob.call("alice", "add", { a: round, b: 1 })).toBe(round + 1);
  await eventually(() => expect(bobDeals.get(`D${round}`)).toBeDefined());
  await eventually(() => expect(Y.encodeStateVector(bobDeals.doc)).toEqual(Y.encodeStateVector(deals.doc)));
}

/** Builds the hostile frames of one burst from the honest document as it is now. */
function arbitraries(honest: Y.Doc) {
  const state = Y.encodeStateAsUpdate(honest);
  const honestClients = new Set(Y.decodeStateVector(Y.encodeStateVector(honest)).keys());
  const victim = [...honestClients][0] as number;
  // Honest-looking updates to mutate: the whole state, and a fresh edit under an unused id.
  const scratch = new Y.Doc();
  Y.applyUpdate(scratch, state);
  const edits: Uint8Array[] = [];
  scratch.on("update", (u: Uint8Array) => edits.push(u));
  scratch.getMap("fields").set("x\u001fy", { v: 1 });
  scratch.getMap("fields").set("x\u001fz", "text");
  scratch.getMap("fields").delete("x\u001fy");
  const samples = [state, ...edits];

  /** True when Yjs itself would integrate the update cleanly under an id no honest agent owns: a legitimate write, not sent. */
  const legitimate = (update: Uint8Array): boolean => {
    try {
      const { structs } = Y.decodeUpdate(update);
      if (structs.some((s) => honestClients.has(s.id.client))) return false;
      const copy = new Y.Doc();
      Y.applyUpdate(copy, state);
      Y.applyUpdate(copy, update);
      return copy.store.pendingStructs === null && copy.store.pendingDs === null;
    } catch {
      return false;
    }
  };
  const doc = (u: Uint8Array) => updateFrame("state/deals", u);
  const mutated = fc
    .tuple(
      fc.constantFrom(...samples),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
    )
    .map(([u, flips]) => {
      const b = u.slice();
      for (const [at, v] of flips) b[at % b.length] = v;
      return b;
    })
    .filter((u) => !legitimate(u))
    .map(doc);
  const truncated = fc
    .tuple(fc.constantFrom(...samples), fc.nat())
    .map(([u, cut]) => u.slice(0, cut % u.length))
    .filter((u) => !legitimate(u))
    .map(doc);
  const forged = fc.integer({ min: 1, max: 5 }).map((k) => {
    const d = new Y.Doc();
    Y.applyUpdate(d, state);
    d.clientID = victim;
    const before = Y.encodeStateVector(d);
    d.getMap("fields").set(`forged\u001f${k}`, k);
    return doc(Y.encodeStateAsUpdate(d, before));
  });
  const pending = fc.integer({ min: 2, max: 6 }).map((k) => {
    const d = new Y.Doc();
    Y.applyUpdate(d, state);
    const ups: Uint8Array[] = [];
    d.on("update", (u: Uint8Array) => ups.push(u));
    for (let i = 0; i < k; i++) d.getMap("fields").set(`p\u001f${i}`, i);
    return doc(ups.at(-1) as Uint8Array); // needs the earlier ones, which never come
  });
  const deep = fc.integer({ min: 40, max: 300 }).map((depth) => {
    const d = new Y.Doc();
    Y.applyUpdate(d, state);
    const before = Y.encodeStateVector(d);
    d.transact(() => {
      let m = new Y.Map<unknown>();
      d.getMap("fields").set("deep\u001fx", m);
      for (let i = 0; i < depth; i++) {
        const next = new Y.Map<unknown>();
        m.set("m", next);
        m = next;
      }
    });
    return doc(Y.encodeStateAsUpdate(d, before));
  });
  const deepJson = fc.integer({ min: 70, max: 2000 }).map((depth) => {
    const d = new Y.Doc();
    Y.applyUpdate(d, state);
    const before = Y.encodeStateVector(d);
    let v: unknown = 1;
    for (let i = 0; i < depth; i++) v = { v };
    d.getMap("fields").set("deepjson\u001fx", v);
    return doc(Y.encodeStateAsUpdate(d, before));
  });
  const oversizedChunked = fc.constant(0).map(() => {
    const big = new Uint8Array(LIMITS.maxUpdateBytes + 2048);
    return chunkBinary(doc(big));
  });
  const frameTypes = [
    "publish",
    "state.setIf",
    "rpc.call",
    "lease.acquire",
    "group.join",
    "feed.open",
    "history",
    "doc.close",
  ];
  const text = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v)),
    fc
      .record({
        type: fc.constantFrom(...frameTypes),
        ref: fc.string({ maxLength: 8 }),
        stream: fc.string({ maxLength: 8 }),
      })
      .chain((base) =>
        fc
          .dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }))
          .map((extra) => ({ ...extra, ...base })),
      )
      .map((v) => JSON.stringify(v))
      .filter((s) => !parseClientFrame(s).ok),
    fc.constant(
      JSON.stringify({ type: "publish", ref: "evil", stream: "main", events: [{ id: "e", type: "evil.x", data: 1 }] }),
    ),
    fc.integer({ min: 70, max: 5000 }).map((d) => `${'{"a":'.repeat(d)}1${"}".repeat(d)}`),
    fc.constant(0).map(() => JSON.stringify({ type: "publish", pad: "x".repeat(1_000_100) })),
  );
  const binary = fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    { weight: 1, arbitrary: fc.constant(openDoc("state/deals")) },
    {
      weight: 1,
      arbitrary: fc
        .string({ minLength: 1, maxLength: 10 })
        .map((ns) => openDoc(`state/${ns.replace(/[^a-z]/g, "") || "x"}`)),
    },
    { weight: 1, arbitrary: fc.constant(updateFrame("log/main", edits[0] as Uint8Array)) },
    {
      weight: 1,
      arbitrary: fc.constant(0).map(() => {
        const e = encoding.createEncoder();
        encoding.writeVarUint(e, 0);
        encoding.writeVarString(e, "state/deals");
        encoding.writeVarUint(e, 0);
        encoding.writeVarUint(e, 2);
        encoding.writeVarUint(e, 1_000_000); // a length far beyond the bytes
        return encoding.toUint8Array(e);
      }),
    },
    { weight: 6, arbitrary: mutated },
    { weight: 2, arbitrary: truncated },
    { weight: 2, arbitrary: forged },
    { weight: 1, arbitrary: pending },
    { weight: 1, arbitrary: deep },
    { weight: 1, arbitrary: deepJson },
  );
  const all = fc.oneof(
    { weight: 20, arbitrary: text.map((t) => [t] as (string | Uint8Array)[]) },
    { weight: 30, arbitrary: binary.map((b) => [b]) },
    { weight: 1, arbitrary: oversizedChunked },
  );
  return { all, text: text.map((t) => [t] as (string | Uint8Array)[]) };
}

async function fuzz(w: World, options: { bursts: number; framesPerBurst: number; seed: number; settleEvery: number }) {
  const closes = new Map<number, number>();
  let sent = 0;
  for (let burst = 1; burst <= options.bursts; burst++) {
    await honestWork(w, burst);
    const honest = w.alice.state("deals").doc;
    const frames = fc
      .sample(burst === options.bursts ? arbitraries(honest).text : arbitraries(honest).all, {
        numRuns: options.framesPerBurst,
        seed: options.seed + burst,
      })
      .flat();
    let evil = await rawSocket(w.room, await w.url());
    evil.send(openDoc("state/deals"));
    let checks = 0;
    /** Waits until the room has handled everything sent so far (a request answered in order), or closed the socket. */
    const settle = async () => {
      const ref = `sentinel-${++checks}`;
      evil.send(JSON.stringify({ type: "consumers.list", ref, stream: "main" }));
      await eventually(
        () => expect(!evil.open || evil.frames.some((f) => f.type === "consumers" && f.ref === ref)).toBe(true),
        { timeoutMs: 60_000 },
      );
      if (evil.open) return;
      const { code } = await evil.closed;
      closes.set(code, (closes.get(code) ?? 0) + 1);
      evil = await rawSocket(w.room, await w.url());
      evil.send(openDoc("state/deals"));
    };
    for (const [i, frame] of frames.entries()) {
      if (!evil.open) await settle();
      evil.send(frame);
      sent++;
      if (i % options.settleEvery === 0) await settle();
    }
    await settle();
    evil.close();
  }
  await honestWork(w, options.bursts + 1);
  return { sent, closes };
}

/** The room's copy, read by a newcomer, equals the honest agents' own, and holds nothing else. */
async function verify(w: World, rounds: number) {
  expect(w.errors).toEqual([]);
  const reader = await w.room.agent("reader", { team: w.team });
  const copy = reader.state("deals");
  await copy.ready;
  const alice = w.alice.state("deals").doc;
  await eventually(() => expect(Y.encodeStateVector(copy.doc)).toEqual(Y.encodeStateVector(alice)));
  expect(Y.encodeStateAsUpdate(copy.doc)).toEqual(Y.encodeStateAsUpdate(alice));
  expect(Y.encodeStateAsUpdate(w.bob.state("deals").doc)).toEqual(Y.encodeStateAsUpdate(alice));
  const owners = new Set([w.alice.state("deals").doc.clientID, w.bob.state("deals").doc.clientID]);
  for (const client of Y.decodeStateVector(Y.encodeStateVector(copy.doc)).keys()) expect(owners).toContain(client);
  expect(copy.doc.store.pendingStructs).toBeNull();
  expect(copy.keys().sort()).toEqual(Array.from({ length: rounds }, (_, i) => `D${i + 1}`).sort());
  // The stream: exactly the honest events, in order.
  const history: StoredEvent[] = [];
  for await (const e of reader.history()) history.push(e);
  expect(history.map((e) => [e.seq, e.type, e.source])).toEqual(
    Array.from({ length: rounds }, (_, i) => [i + 1, "deal.touched", "alice"]),
  );
  expect(w.events.map((e) => e.id)).toEqual(history.map((e) => e.id));
  // The room answers normally.
  expect(await w.alice.call("bob", "missing").catch((e) => e.code)).toBe("NO_ROUTE");
  expect((await w.alice.publish("after.fuzz", {})).seq).toBe(rounds + 1);
}

it("survives tens of thousands of hostile frames on the in-process room; honest state is byte-for-byte untouched", async () => {
  const room = createTestRoom({ limits: LIMITS });
  hosts.push(room);
  const w = await world(room);
  const bursts = Number(process.env.FUZZ_BURSTS ?? 20);
  const { sent, closes } = await fuzz(w, { bursts, framesPerBurst: 1000, seed: 16, settleEvery: 25 });
  await verify(w, bursts + 1);
  console.log(`hostile frames sent: ${sent}; closes by code: ${JSON.stringify([...closes])}`);
  expect(sent).toBeGreaterThanOrEqual(bursts * 1000);
  expect([...closes.keys()].sort()).toEqual([CLOSE_CODES.BadUpdate.code, CLOSE_CODES.TooManyErrors.code].sort());
}, 600_000);

it("survives a shorter hostile run on a real partykit dev", async () => {
  const room: RoomServer = await startRoom({ vars: { CROSSTALK_MAX_UPDATE_BYTES: String(LIMITS.maxUpdateBytes) } });
  hosts.push(room);
  const w = await world(room, (agent, role, team) => room.token(agent, role, { team }));
  const { sent, closes } = await fuzz(w, { bursts: 3, framesPerBurst: 400, seed: 99, settleEvery: 10 });
  await verify(w, 4);
  console.log(`real room: hostile frames sent: ${sent}; closes by code: ${JSON.stringify([...closes])}`);
  for (const code of closes.keys())
    expect([CLOSE_CODES.BadUpdate.code, CLOSE_CODES.TooManyErrors.code]).toContain(code);
  expect(closes.size).toBeGreaterThan(0);
}, 600_000);
