/**
 * End to end over a real room: two Node agents and one agent running inside workerd share
 * state, publish and subscribe in order, call each other both ways and see one roster; a
 * stock y-websocket client syncs a namespace.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import type { StoredEvent, Team } from "../client/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

type Observed = {
  status: string;
  events: Pick<StoredEvent, "seq" | "type" | "source" | "data">[];
  deals: Record<string, Record<string, unknown>>;
  agents: string[];
};

describe("a team of two Node agents and a workerd agent", () => {
  it("shares state, events, calls and the roster", async () => {
    const team = room.team("e2e");
    const sales = await room.agent("sales-1", { team, role: "sales" });
    const legal = await room.agent("legal-1", { team, role: "legal" });

    // The workerd agent connects through the same client library, from inside a party.
    const token = await room.token("worker-1", "worker", { team });
    const started = await room.fetch(
      `/parties/worker/w-${team}?host=${room.host}&team=${team}&agent=worker-1&token=${token}`,
      { method: "POST" },
    );
    expect(await started.json()).toEqual({ ok: true });
    const worker = async () => (await (await room.fetch(`/parties/worker/w-${team}`)).json()) as Observed;
    const workerDo = async (cmd: unknown) =>
      (await room.fetch(`/parties/worker/w-${team}/do`, { method: "POST", body: JSON.stringify(cmd) })).json();

    // Roster: everyone sees everyone, with the role the room stamped.
    await eventually(() =>
      expect(
        sales
          .agents()
          .map((a) => a.agent)
          .sort(),
      ).toEqual(["legal-1", "sales-1", "worker-1"]),
    );
    await eventually(async () => expect((await worker()).agents).toEqual(["legal-1", "sales-1", "worker-1"]));
    expect(legal.agents().find((a) => a.agent === "sales-1")?.role).toBe("sales");

    // Events: subscribers see one order, with room-stamped seq and source.
    const seenByLegal: StoredEvent[] = [];
    const sub = legal.subscribe("deal.*", (e) => void seenByLegal.push(e), { from: "start" });
    await sub.ready;
    const acks = await Promise.all([
      sales.publish("deal.created", { dealId: "D1" }),
      sales.publish("deal.closed", { dealId: "D1", amount: 50_000 }),
      sales.publish("note.added", { text: "not a deal event" }),
    ]);
    expect(acks.map((a) => a.seq)).toEqual([1, 2, 3]);
    expect(acks.every((a) => !a.duplicate)).toBe(true);
    const fromWorker = (await workerDo({ op: "publish", type: "deal.won", data: { dealId: "D1" } })) as { seq: number };
    expect(fromWorker.seq).toBe(4);

    await eventually(() => expect(seenByLegal.map((e) => e.seq)).toEqual([1, 2, 4]));
    expect(seenByLegal.map((e) => e.source)).toEqual(["sales-1", "sales-1", "worker-1"]);
    expect(seenByLegal[1]?.data).toEqual({ dealId: "D1", amount: 50_000 });
    await eventually(async () =>
      expect((await worker()).events.map((e) => [e.seq, e.type, e.source])).toEqual([
        [1, "deal.created", "sales-1"],
        [2, "deal.closed", "sales-1"],
        [3, "note.added", "sales-1"],
        [4, "deal.won", "worker-1"],
      ]),
    );

    // Shared state: writes from all three runtimes converge, field by field.
    const dealsA = sales.state("deals");
    const dealsB = legal.state("deals");
    await Promise.all([dealsA.ready, dealsB.ready]);
    dealsA.set("D1", { stage: "negotiation", amount: 50_000 });
    await eventually(() => expect(dealsB.get("D1")).toEqual({ stage: "negotiation", amount: 50_000 }));
    dealsB.update("D1", { legalReview: "done" });
    await workerDo({ op: "set", key: "D1", value: { owner: "worker-1" } });
    const expected = { stage: "negotiation", amount: 50_000, legalReview: "done", owner: "worker-1" };
    await eventually(() => expect(dealsA.get("D1")).toEqual(expected));
    await eventually(() => expect(dealsB.get("D1")).toEqual(expected));
    await eventually(async () => expect((await worker()).deals.D1).toEqual(expected));

    // Direct messages, each way: Node -> workerd, workerd -> Node, Node -> Node.
    legal.handle("review", (input, ctx) => ({ approved: true, input, caller: ctx.from }));
    await eventually(() => expect(sales.agents().find((a) => a.agent === "legal-1")?.methods).toContain("review"));
    const echoed = await sales.call<{ echo: unknown; from: string; runtime: string }>("worker-1", "echo", { n: 1 });
    expect(echoed).toMatchObject({ echo: { n: 1 }, from: "sales-1" });
    expect(echoed.runtime).toMatch(/Cloudflare-Workers/);
    expect(await workerDo({ op: "call", to: "legal-1", method: "review", input: { dealId: "D1" } })).toEqual({
      output: { approved: true, input: { dealId: "D1" }, caller: "worker-1" },
    });
    expect(await sales.call("legal-1", "review", { dealId: "D2" })).toEqual({
      approved: true,
      input: { dealId: "D2" },
      caller: "sales-1",
    });

    // Leaving shows in the roster.
    await workerDo({ op: "close" });
    await eventually(() =>
      expect(
        sales
          .agents()
          .map((a) => a.agent)
          .sort(),
      ).toEqual(["legal-1", "sales-1"]),
    );
  });
});

describe("interop", () => {
  it("syncs a namespace with a stock y-websocket WebsocketProvider", async () => {
    const team = room.team("interop");
    const agent = await room.agent("agent", { team });
    const deals = agent.state("deals");
    await deals.ready;
    deals.set("D1", { stage: "open" });

    const ydoc = new Y.Doc();
    const provider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, ydoc, {
      params: { doc: "state/deals", agent: "editor", token: await room.token("editor", "agent", { team }) },
      WebSocketPolyfill: WebSocket as never,
      disableBc: true,
    });
    try {
      await eventually(() => expect(provider.synced).toBe(true));
      const fields = ydoc.getMap("fields");
      expect(fields.get("D1\u001fstage")).toBe("open");
      // A plain Yjs write from the editor reaches the agent as a field-level change.
      fields.set("D1\u001fowner", "editor");
      await eventually(() => expect(deals.get("D1")).toEqual({ stage: "open", owner: "editor" }));
      deals.update("D1", { stage: "won" });
      await eventually(() => expect(fields.get("D1\u001fstage")).toBe("won"));
      // Log documents stay read-only for stock clients too.
      const logDoc = new Y.Doc();
      const logProvider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, logDoc, {
        params: { doc: "log/main", token: await room.token("log-reader", "agent", { team }) },
        WebSocketPolyfill: WebSocket as never,
        disableBc: true,
      });
      await pubAndCheck(agent, logDoc, logProvider);
    } finally {
      provider.destroy();
    }
  });
});

async function pubAndCheck(agent: Team, logDoc: Y.Doc, provider: WebsocketProvider) {
  try {
    await agent.publish("deal.won", { dealId: "D1" });
    await eventually(() => expect(JSON.stringify(logDoc.getMap("segments").toJSON())).toContain("deal.won"));
    logDoc.getMap("segments").set("999", new Y.Array());
    await agent.publish("deal.after", {});
    const events: string[] = [];
    for await (const e of agent.history({})) events.push(e.type);
    expect(events).toEqual(["deal.won", "deal.after"]);
  } finally {
    provider.destroy();
  }
}
