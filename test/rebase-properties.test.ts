/**
 * The state convergence properties of state.test.ts, on an in-process room that rebases its
 * state documents after a handful of writes, so that rebases interleave with every write,
 * delete and disconnect: every copy still converges, and — where the outcome is fixed (each
 * agent alone writes and deletes its own entities) — on exactly what each agent last wrote or
 * deleted, offline or not. The real-server rebase tests are in rebase.test.ts.
 */
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Team } from "../client/index.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

let room: TestRoom;
beforeAll(() => {
  room = createTestRoom({ rebase: { minStructs: 4, ratio: 1.2 } });
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

async function rebases(team: string): Promise<number> {
  const text = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("crosstalk_doc_rebases_total{"));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

it("converges under random set/update/delete and disconnects with rebases interleaved (property)", async () => {
  const op = fc.record({
    agent: fc.integer({ min: 0, max: 4 }),
    kind: fc.constantFrom("set", "update", "delete", "cut"),
    key: fc.constantFrom("K1", "K2", "K3"),
    field: fc.constantFrom("f1", "f2", "f3"),
    value: fc.integer({ min: 0, max: 9 }),
  });
  let run = 0;
  let total = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 3, max: 5 }),
      fc.array(op, { minLength: 40, maxLength: 120 }),
      async (n, ops) => {
        const team = room.team(`prop${run++}`);
        const nets = Array.from({ length: n }, () => room.cuttableSocket());
        const agents = await Promise.all(nets.map((net, i) => room.agent(`p${i}`, { team, WebSocket: net.WebSocket })));
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
        total += await rebases(team);
        await Promise.all(agents.map((t) => t.close()));
      },
    ),
    { numRuns: 8, seed: 4242 },
  );
  // Rebases did interleave: more than one per run on average.
  expect(total).toBeGreaterThan(8);
}, 120_000);

it("ends on each agent's own last write or delete of its entities, offline or not, across rebases (property)", async () => {
  const op = fc.record({
    agent: fc.integer({ min: 0, max: 2 }),
    kind: fc.constantFrom("set", "update", "delete", "delete", "cut", "pause"),
    key: fc.constantFrom("a", "b", "c"),
    field: fc.constantFrom("f1", "f2"),
    value: fc.nat(99),
  });
  let run = 0;
  let total = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 40, maxLength: 160 }), async (ops) => {
      const team = room.team(`own${run++}`);
      const nets = [room.cuttableSocket(), room.cuttableSocket(), room.cuttableSocket()];
      const agents = await Promise.all(nets.map((net, i) => room.agent(`o${i}`, { team, WebSocket: net.WebSocket })));
      await Promise.all(agents.map((t) => t.state("s").ready));
      // What each entity must end as: its owner's writes and deletes, in order (no one else touches it).
      const expected = new Map<string, Record<string, number>>();
      for (const o of ops) {
        const ns = (agents[o.agent] as Team).state<Record<string, number>>("s");
        const key = `${o.agent}-${o.key}`;
        if (o.kind === "set") {
          ns.set(key, { [o.field]: o.value });
          expected.set(key, { [o.field]: o.value });
        } else if (o.kind === "update") {
          ns.update(key, { [o.field]: o.value });
          expected.set(key, { ...expected.get(key), [o.field]: o.value });
        } else if (o.kind === "delete") {
          ns.delete(key);
          expected.delete(key);
        } else if (o.kind === "cut") nets[o.agent]?.cut();
        else await new Promise((r) => setTimeout(r, 1 + (o.value % 5)));
      }
      await Promise.all(agents.map((t) => t.online(20_000)));
      const state = await sameEverywhere(agents, "s");
      const want = Object.fromEntries([...expected].sort(([a], [b]) => (a < b ? -1 : 1)));
      expect(state).toEqual(want);
      total += await rebases(team);
      await Promise.all(agents.map((t) => t.close()));
    }),
    { numRuns: 12, seed: 1818 },
  );
  expect(total).toBeGreaterThan(12);
}, 120_000);
