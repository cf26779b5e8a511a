/**
 * Permissions end to end, through a real `partykit dev`: an admin changes the team's policy
 * over the API (no deploy), it takes effect for agents already connected, a write the room
 * refuses (the change raced it) leaves the writer equal to the room and its later permitted
 * writes land, a stock y-websocket client without write permission changes nothing, and the
 * HTTP views follow the policy. Identities come from the connect URL until the edge verifies
 * tokens (the identity half of #15).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import type { CrosstalkError } from "../protocol/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** A `ws` class whose incoming messages a test can hold back (a link that lags behind the room). */
function laggingSocket() {
  let paused = false;
  const held: (() => void)[] = [];
  class Lagging extends WebSocket {
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event === "message" && paused) {
        held.push(() => super.emit(event, ...args));
        return true;
      }
      return super.emit(event, ...args);
    }
  }
  return {
    WebSocket: Lagging,
    pause: () => {
      paused = true;
    },
    resume: () => {
      paused = false;
      for (const deliver of held.splice(0)) deliver();
    },
  };
}

const withWrite = {
  roles: { admin: { allow: [">"] }, sales: { allow: ["state.read", "state.write", "http.read:state"] } },
};
const readOnly = {
  roles: { admin: { allow: [">"] }, sales: { allow: ["state.read"] }, yjs: { allow: ["state.read"] } },
};

it("a policy change over the admin API: applies live; a refused write resyncs; later writes land", async () => {
  const team = room.team("policy");
  const admin = await room.agent("ops", { team, role: "admin" });
  const link = laggingSocket();
  const writer = await room.agent("w", { team, role: "sales", WebSocket: link.WebSocket });
  await admin.setPolicy(withWrite);
  await eventually(() => expect(writer.permissions?.allow).toEqual(["state.read", "state.write", "http.read:state"]));
  const deals = writer.state("deals");
  await deals.ready;
  deals.set("D1", { amount: 1 });
  const mirror = admin.state("deals");
  await eventually(() => expect(mirror.toJSON()).toEqual({ D1: { amount: 1 } }));

  // The writer's link lags: it writes before it hears of the change.
  link.pause();
  const policy = await admin.setPolicy(readOnly);
  expect(policy.rev).toBe(2);
  const refused: CrosstalkError[] = [];
  deals.on("refused", (e) => refused.push(e));
  deals.set("D2", { amount: 666 });
  await new Promise((r) => setTimeout(r, 200));
  link.resume();
  await eventually(() => expect(refused[0]?.message).toContain("state/deals"));
  await deals.ready;
  await eventually(() => expect(deals.toJSON()).toEqual({ D1: { amount: 1 } }));
  expect(mirror.toJSON()).toEqual({ D1: { amount: 1 } });
  expect(() => deals.set("D3", { amount: 3 })).toThrow(expect.objectContaining({ code: "FORBIDDEN" }));

  // A stock y-websocket client (role yjs here) may read but not write: its write changes nothing.
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, ydoc, {
    params: { doc: "state/deals", token: await room.token("editor", "yjs", { team }) },
    WebSocketPolyfill: WebSocket as never,
    disableBc: true,
  });
  try {
    await eventually(() => expect(provider.synced).toBe(true));
    ydoc.getMap("fields").set("D1\u001famount", 666);
    await new Promise((r) => setTimeout(r, 300));
    expect(mirror.toJSON()).toEqual({ D1: { amount: 1 } });
  } finally {
    provider.destroy();
  }

  // Write access back: the writer's next writes land and reach everyone.
  await admin.setPolicy(withWrite, { expectedRev: 2 });
  await eventually(() => expect(writer.permissions?.allow).toContain("state.write"));
  deals.set("D4", { amount: 4 });
  await eventually(() => expect(mirror.toJSON()).toEqual({ D1: { amount: 1 }, D4: { amount: 4 } }));

  // The HTTP views follow the policy too.
  const view = async (path: string, role: string) =>
    room.fetch(`/parties/main/${team}/${path}`, {
      headers: { authorization: `Bearer ${await room.token("x", role, { team })}` },
    });
  expect((await view("policy", "admin")).status).toBe(200);
  expect((await view("policy", "sales")).status).toBe(403);
  expect((await view("metrics", "sales")).status).toBe(403);
  expect(await (await view("state/deals", "sales")).json()).toMatchObject({ D4: { value: { amount: 4 } } });
});

it("holds a stock Yjs client to its token's role: a role denied state.write cannot write through ?doc=", async () => {
  const team = room.team("rawrole");
  const admin = await room.agent("ops", { team, role: "admin" });
  await admin.setPolicy({
    roles: {
      admin: { allow: [">"] },
      "*": { allow: ["state.read", "state.write"] },
      viewer: { deny: ["state.write"] },
    },
  });
  const owner = await room.agent("sales-1", { team, role: "sales" });
  const deals = owner.state("deals");
  await deals.ready;
  deals.set("D1", { amount: 1 });

  const refused = async () => {
    const text = await (await room.fetch(`/parties/main/${team}/metrics`)).text();
    const line = text.split("\n").find((l) => l.startsWith('crosstalk_refused_frames_total{code="FORBIDDEN"}'));
    return line ? Number(line.split(" ").at(-1)) : 0;
  };
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, ydoc, {
    params: { doc: "state/deals", token: await room.token("eve", "viewer", { team }) },
    WebSocketPolyfill: WebSocket as never,
    disableBc: true,
  });
  try {
    await eventually(() => expect(ydoc.getMap("fields").get("D1\u001famount")).toBe(1));
    const before = await refused();
    ydoc.getMap("fields").set("D1\u001famount", 666);
    await eventually(() => expect(refused()).resolves.toBeGreaterThan(before));
    deals.update("D1", { stage: "won" });
    const reader = await room.agent("reader", { team });
    const copy = reader.state("deals");
    await copy.ready;
    await eventually(() => expect(copy.get("D1")).toEqual({ amount: 1, stage: "won" }));
  } finally {
    provider.destroy();
  }
});
