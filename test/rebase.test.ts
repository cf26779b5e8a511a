/**
 * Room-driven rebase of state documents, on the real server: a namespace overwritten in a
 * loop is rebased onto a fresh copy once its history outweighs its content (Yjs keeps a
 * struct per overwritten value), so the room's memory follows the entities, not the writes.
 * Everyone resyncs; an agent offline across the rebase carries its writes over, field by
 * field; nothing written is lost, and every copy converges.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Team } from "../client/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom({ vars: { CROSSTALK_REBASE: "1" } });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const KEYS = 100;
const WRITES = 6_000;

async function rebases(team: string): Promise<number> {
  const text = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("crosstalk_doc_rebases_total{"));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

it("rebases a namespace overwritten in a loop; an agent offline across it carries its writes over; all converge", async () => {
  const team = room.team("rebase");
  const net = room.cuttableSocket();
  const writer = await room.agent("writer", { team });
  const reader = await room.agent("reader", { team });
  const away = await room.agent("away", { team, WebSocket: net.WebSocket });
  const agents: Team[] = [writer, reader, away];
  const ns = (t: Team) => t.state<{ n: number; by?: string }>("board");
  await Promise.all(agents.map((t) => ns(t).ready));
  ns(away).set("shared-0", { n: -1, by: "away" });
  await eventually(() => expect(ns(writer).get("shared-0")?.by).toBe("away"));

  net.down();
  await eventually(() => expect(away.status).toBe("offline"));
  // Offline: a new entity, and a field of one the writer keeps overwriting.
  ns(away).set("away-only", { n: 1 });
  ns(away).update("shared-1", { by: "away" });

  for (let i = 0; i < WRITES; i++) {
    ns(writer).set(`shared-${i % KEYS}`, { n: i });
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 5));
  }
  await eventually(async () => expect(await rebases(team)).toBeGreaterThan(0), { timeoutMs: 30_000 });
  net.up();

  const expected = (k: number) => WRITES - KEYS + k;
  await eventually(
    () => {
      for (const t of agents) {
        const s = ns(t);
        for (let k = 0; k < KEYS; k++) expect(s.get(`shared-${k}`)?.n).toBe(expected(k));
        expect(s.get("away-only")).toEqual({ n: 1 });
        // The offline field survives beside the writer's later value of the other field.
        expect(s.get("shared-1")?.by).toBe("away");
      }
    },
    { timeoutMs: 30_000 },
  );
  const [first, ...rest] = agents.map((t) => JSON.stringify(ns(t).toJSON()));
  for (const other of rest) expect(other).toBe(first);
  const stored = (await (await room.fetch(`/parties/main/${team}/state/board`)).json()) as Record<
    string,
    { value: unknown }
  >;
  expect(Object.keys(stored)).toHaveLength(KEYS + 1);
  expect(stored["away-only"]?.value).toEqual({ n: 1 });
  await Promise.all(agents.map((t) => t.close()));
}, 120_000);

it("an entity deleted offline across two rebases stays deleted; a field another agent wrote meanwhile survives the delete", async () => {
  const team = room.team("rebase-delete");
  const net = room.cuttableSocket();
  const writer = await room.agent("writer", { team });
  const away = await room.agent("away", { team, WebSocket: net.WebSocket });
  const agents: Team[] = [writer, away];
  const ns = (t: Team) => t.state<{ n: number; by?: string }>("board");
  await Promise.all(agents.map((t) => ns(t).ready));
  ns(writer).set("doomed", { n: 1, by: "writer" });
  ns(writer).set("contested", { n: 1, by: "writer" });
  ns(away).set("mine", { n: 1, by: "away" });
  await eventually(() => expect(ns(away).keys().sort()).toEqual(["contested", "doomed", "mine"]));

  net.down();
  await eventually(() => expect(away.status).toBe("offline"));
  // Offline: two entities the writer made and one of its own, all deleted.
  expect(ns(away).delete("doomed")).toBe(true);
  expect(ns(away).delete("contested")).toBe(true);
  expect(ns(away).delete("mine")).toBe(true);

  // Meanwhile the writer changes one field of `contested` (a concurrent update survives a
  // delete: the entity comes back with just that field), and rebases the namespace twice.
  ns(writer).update("contested", { n: 2 });
  // Writes in rounds until the room has rebased twice (how many writes that takes depends on
  // how the room batches them), asked while the room is busy (a hibernated room's counters restart).
  let i = 0;
  while ((await rebases(team)) < 2) {
    expect(i).toBeLessThan(20 * WRITES);
    for (const end = i + 2_000; i < end; i++) {
      ns(writer).set(`shared-${i % KEYS}`, { n: i });
      if (i % 200 === 199) await new Promise((r) => setTimeout(r, 5));
    }
  }
  net.up();

  await eventually(
    () => {
      for (const t of agents) {
        const s = ns(t);
        expect(s.has("doomed")).toBe(false);
        expect(s.has("mine")).toBe(false);
        expect(s.get("contested")).toEqual({ n: 2 });
        expect(s.get(`shared-${KEYS - 1}`)?.n).toBe(i - 1);
      }
    },
    { timeoutMs: 30_000 },
  );
  const [first, second] = agents.map((t) => JSON.stringify(ns(t).toJSON()));
  expect(second).toBe(first);
  const stored = (await (await room.fetch(`/parties/main/${team}/state/board`)).json()) as Record<string, unknown>;
  expect(Object.keys(stored).sort()).toEqual(
    ["contested", ...Array.from({ length: KEYS }, (_, k) => `shared-${k}`)].sort(),
  );
  await Promise.all(agents.map((t) => t.close()));
}, 120_000);
