/**
 * Yjs trusts the client id inside an update. The attack from the issue: a stock y-websocket
 * client syncs `state/deals`, reads an honest agent's Yjs client id from the state vector and
 * writes under it (at its next clock), so the forged value looks like the honest agent's own
 * edit. The room binds every Yjs client id to the agent that first wrote under it and refuses
 * updates under another's id: nothing is applied, the honest agent never sees it.
 */

import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const refusedForbidden = async (): Promise<number> => {
  const text = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('crosstalk_refused_frames_total{code="FORBIDDEN"}'));
  return line ? Number(line.split(" ").at(-1)) : 0;
};

/** A stock y-websocket client on `state/deals` of `team`, signed in as `agent` (a valid token of its own). */
async function stockClient(team: string, agent = "mallory"): Promise<{ ydoc: Y.Doc; provider: WebsocketProvider }> {
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, ydoc, {
    params: { doc: "state/deals", token: await room.token(agent, "agent", { team }) },
    WebSocketPolyfill: WebSocket as never,
    disableBc: true,
  });
  return { ydoc, provider };
}

let team: string;

it("refuses an update written under another agent's Yjs client id, also after a room restart", async () => {
  team = room.team("forge");
  const honest = await room.agent("sales-1", { team });
  const deals = honest.state("deals");
  await deals.ready;
  deals.set("D1", { amount: 100 });

  const attack = async (value: number) => {
    const { ydoc, provider } = await stockClient(team);
    try {
      await eventually(() => expect(ydoc.getMap("fields").get("D1\u001famount")).toBe(100));
      // The honest agent's client id, from the synced state vector.
      const victim = [...Y.decodeStateVector(Y.encodeStateVector(ydoc)).keys()].find((c) => c !== ydoc.clientID);
      expect(victim).toBeDefined();
      const before = await refusedForbidden();
      const own = ydoc.clientID;
      ydoc.clientID = victim as number;
      ydoc.getMap("fields").set("D1\u001famount", value);
      ydoc.clientID = own; // y-protocols' awareness is keyed by the doc's own id.
      await eventually(() => expect(refusedForbidden()).resolves.toBe(before + 1));
    } finally {
      provider.destroy();
    }
  };

  await attack(666);
  // The honest agent still sees its own value, and so does a newcomer reading the room's copy.
  deals.update("D1", { stage: "won" });
  const reader = await room.agent("reader", { team });
  const copy = reader.state("deals");
  await copy.ready;
  await eventually(() => expect(copy.get("D1")).toEqual({ amount: 100, stage: "won" }));
  expect(deals.get("D1")).toEqual({ amount: 100, stage: "won" });

  // The binding is stored: after a SIGKILL restart the id still belongs to the honest agent.
  await room.kill("SIGKILL");
  await room.restart();
  await honest.online(20_000);
  await attack(777);
  deals.update("D1", { stage: "signed" });
  await eventually(() => expect(copy.get("D1")).toEqual({ amount: 100, stage: "signed" }));
  // The honest agent's own writes under its id still land.
  deals.update("D1", { amount: 120 });
  await eventually(() => expect(copy.get("D1")).toEqual({ amount: 120, stage: "signed" }));
});

it("refuses an entity write that claims another agent as its author; honest writes carry the writer's verified id", async () => {
  const writerTeam = room.team("attribution");
  const honest = await room.agent("sales-1", { team: writerTeam });
  const deals = honest.state("deals");
  await deals.ready;
  deals.set("D1", { amount: 100 });
  const reader = await room.agent("reader", { team: writerTeam });
  const copy = reader.state("deals");
  await copy.ready;
  await eventually(() => expect(copy.meta("D1")).toMatchObject({ updatedBy: "sales-1" }));

  // A stock Yjs client with its own (valid) token rewrites the entity's meta to name sales-1.
  const { ydoc, provider } = await stockClient(writerTeam);
  try {
    await eventually(() => expect(provider.synced).toBe(true));
    ydoc.transact(() => {
      ydoc.getMap("fields").set("D1\u001famount", 1);
      ydoc.getMap("meta").set("D1", { version: 99, updatedBy: "sales-1", updatedAt: Date.now() });
    });
    // The next honest write is seen; the forged one never is.
    deals.update("D1", { stage: "won" });
    await eventually(() => expect(copy.get("D1")).toEqual({ amount: 100, stage: "won" }));
    expect(copy.meta("D1")?.version).not.toBe(99);
  } finally {
    provider.destroy();
  }
});

it("refuses entity meta written as anything but plain values (a nested type could carry another agent's name)", async () => {
  const t = room.team("opaque-meta");
  const honest = await room.agent("sales-1", { team: t });
  const deals = honest.state("deals");
  await deals.ready;
  deals.set("D1", { amount: 100 });
  const { ydoc, provider } = await stockClient(t);
  try {
    await eventually(() => expect(provider.synced).toBe(true));
    ydoc.transact(() => {
      ydoc.getMap("fields").set("D1\u001famount", 1);
      ydoc.getMap("meta").set("D1", new Y.Map([["updatedBy", "sales-1"]]));
    });
    deals.update("D1", { stage: "won" });
    const reader = await room.agent("reader", { team: t });
    const copy = reader.state("deals");
    await copy.ready;
    await eventually(() => expect(copy.get("D1")).toEqual({ amount: 100, stage: "won" }));
    expect(copy.meta("D1")).toMatchObject({ updatedBy: "sales-1" });
  } finally {
    provider.destroy();
  }
});
