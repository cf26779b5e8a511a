/**
 * Bad input from a raw socket: a write to a room-owned log document, malformed and unknown
 * frames, garbage binary, bad connect parameters and a stolen agent id. Each gets a typed
 * error (or close code); nothing is applied; the room and the other agents carry on.
 */
import * as encoding from "lib0/encoding";
import { afterAll, beforeAll, expect, it } from "vitest";
import WebSocket from "ws";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { CLOSE_CODES, PROTOCOL_VERSION, type StoredEvent } from "../client/index.ts";
import { appendEvents } from "../party/log.ts";
import { encodeDocFrame, logSegments, parseRoomFrame, type RoomFrame } from "../protocol/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

type Raw = {
  ws: WebSocket;
  frames: RoomFrame[];
  binary: Uint8Array[];
  closed: Promise<{ code: number; reason: string }>;
};

async function raw(team: string, query: string): Promise<Raw> {
  const ws = new WebSocket(`ws://${room.host}/parties/main/${team}?${query}`);
  const frames: RoomFrame[] = [];
  const binary: Uint8Array[] = [];
  ws.on("message", (data, isBinary) => {
    if (isBinary) binary.push(new Uint8Array(data as Buffer));
    else {
      const parsed = parseRoomFrame(String(data));
      if (!parsed.ok) throw new Error(`room sent an invalid frame: ${String(data)}`);
      frames.push(parsed.frame);
    }
  });
  const closed = new Promise<{ code: number; reason: string }>((r) =>
    ws.on("close", (code, reason) => r({ code, reason: String(reason) })),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return { ws, frames, binary, closed };
}

const errors = (r: Raw) => r.frames.filter((f) => f.type === "error");

it("refuses client writes to a log document, malformed and unknown frames, and carries on", async () => {
  const team = room.team("hostile");
  const honest = await room.agent("honest", { team });
  const watcher = await room.agent("watcher", { team });
  await honest.publish("deal.created", { dealId: "D1" });

  const evil = await raw(
    team,
    `agent=evil&role=x&v=${PROTOCOL_VERSION}&token=${await room.token("evil", "x", { team })}`,
  );
  await eventually(() => expect(evil.frames[0]?.type).toBe("welcome"));

  // Open log/main properly, then try to append a forged event to it.
  const local = new Y.Doc();
  evil.ws.send(encodeDocFrame("log/main", (e) => syncProtocol.writeSyncStep1(e, local)));
  await eventually(() => expect(evil.binary.length).toBeGreaterThan(0));
  const forged = new Y.Doc();
  forged.on("update", (update: Uint8Array) => {
    evil.ws.send(encodeDocFrame("log/main", (e) => syncProtocol.writeUpdate(e, update)));
  });
  forged.transact(() =>
    appendEvents(logSegments(forged), [
      { id: "forged", type: "deal.closed", data: { amount: 1e9 }, stream: "main", seq: 2, ts: 0, source: "honest" },
    ]),
  );
  // The same through a sync step 2, which y-protocols also applies.
  evil.ws.send(
    encodeDocFrame("log/main", (e) => {
      encoding.writeVarUint(e, syncProtocol.messageYjsSyncStep2);
      encoding.writeVarUint8Array(e, Y.encodeStateAsUpdate(forged));
    }),
  );
  // Text frames: not JSON, unknown type, known type failing its schema, a publish with a bad event.
  evil.ws.send("this is not json");
  evil.ws.send(JSON.stringify({ type: "launch.missiles" }));
  evil.ws.send(JSON.stringify({ type: "publish", ref: "p-bad", stream: "main" }));
  evil.ws.send(
    JSON.stringify({
      type: "publish",
      ref: "p-bad2",
      stream: "main",
      events: [{ id: "x", type: "deal..closed", data: 1 }],
    }),
  );
  // Binary garbage, an unknown binary kind, a doc frame for a document that is not allowed.
  evil.ws.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
  evil.ws.send(new Uint8Array([7, 1, 2, 3]));
  evil.ws.send(encodeDocFrame("state/x", (e) => encoding.writeVarUint(e, 9)));
  evil.ws.send(
    (() => {
      const e = encoding.createEncoder();
      encoding.writeVarUint(e, 0);
      encoding.writeVarString(e, "secrets/all");
      encoding.writeVarUint(e, 0);
      return encoding.toUint8Array(e);
    })(),
  );

  await eventually(() => expect(errors(evil).length).toBe(10));
  const got = errors(evil).map((f) => (f.type === "error" ? [f.error.code, f.ref ?? f.doc ?? null] : null));
  expect(got).toEqual([
    ["FORBIDDEN", "log/main"],
    ["FORBIDDEN", "log/main"],
    ["BAD_FRAME", null],
    ["UNKNOWN_FRAME", null],
    ["BAD_FRAME", "p-bad"],
    ["BAD_FRAME", "p-bad2"],
    ["BAD_FRAME", null],
    ["UNKNOWN_FRAME", null],
    ["UNKNOWN_FRAME", "state/x"],
    ["BAD_FRAME", null],
  ]);

  // The log is unchanged: a fresh reader sees only the honest event, then the next one.
  const after = await honest.publish("deal.won", { dealId: "D1" });
  expect(after.seq).toBe(2);
  const seen: StoredEvent[] = [];
  await watcher.subscribe(">", (e) => void seen.push(e), { from: "start" }).ready;
  await eventually(() =>
    expect(seen.map((e) => [e.seq, e.id === "forged", e.source])).toEqual([
      [1, false, "honest"],
      [2, false, "honest"],
    ]),
  );

  // The hostile socket is still served for valid frames, stamped with its own identity.
  evil.ws.send(
    JSON.stringify({ type: "publish", ref: "p-ok", stream: "main", events: [{ id: "e-ok", type: "x.y", data: null }] }),
  );
  await eventually(() => expect(evil.frames.some((f) => f.type === "publish.ack" && f.ref === "p-ok")).toBe(true));
  await eventually(() => expect(seen.at(-1)).toMatchObject({ seq: 3, source: "evil" }));

  // And honest agents still call each other.
  watcher.handle("ping", () => "pong");
  await eventually(() => expect(honest.agents().find((a) => a.agent === "watcher")?.methods).toEqual(["ping"]));
  expect(await honest.call("watcher", "ping")).toBe("pong");
  evil.ws.close();
});

it("closes connections with bad parameters or another agent's id, with named codes", async () => {
  const team = room.team("identity");
  // No token: refused before the room is touched (an agent id alone proves nothing).
  const noToken = await raw(team, "role=x");
  expect((await noToken.closed).code).toBe(CLOSE_CODES.Unauthorized.code);
  const badVersion = await raw(team, `agent=a&v=999&token=${await room.token("a", "agent", { team })}`);
  expect((await badVersion.closed).code).toBe(CLOSE_CODES.BadRequest.code);
  // A version-1 client would misread the room's compact log entries: refused, and told why.
  const oldClient = await raw(team, `agent=a&v=1&token=${await room.token("a", "agent", { team })}`);
  expect(await oldClient.closed).toMatchObject({
    code: CLOSE_CODES.BadRequest.code,
    reason: expect.stringContaining("protocol version 1"),
  });

  const owner = await room.agent("owner", { team });
  const thief = await raw(team, `agent=owner&role=x&v=${PROTOCOL_VERSION}&_pk=someone-else`);
  expect((await thief.closed).code).toBe(CLOSE_CODES.Unauthorized.code);
  const impostor = await raw(
    team,
    `agent=owner&role=x&v=${PROTOCOL_VERSION}&_pk=someone-else&token=${await room.token("thief", "x", { team })}`,
  );
  expect((await impostor.closed).code).toBe(CLOSE_CODES.Forbidden.code);
  // The owner is unaffected.
  expect(owner.status).toBe("online");
  expect((await owner.publish("still.here", {})).seq).toBe(1);

  // With the owner's own token a second instance takes over (the newest signed connection
  // wins); through the client library the older one gets a typed error, not a reconnect loop.
  const successor = await room.agent("owner", { team });
  await eventually(() => expect(owner.status).toBe("closed"));
  await expect(owner.online()).rejects.toMatchObject({ code: "CONFLICT" });
  expect((await successor.publish("taken.over", {})).seq).toBe(2);
});

it("frees an agent id as soon as close() resolves, so a successor instance is never refused", async () => {
  const team = room.team("succession");
  const watcher = await room.agent("watcher", { team });
  // A socket whose closing handshake is slow to leave (a busy event loop, a slow network):
  // the id must be free before it goes, not when the room finally sees it close.
  class SlowToClose extends WebSocket {
    override close(code?: number, reason?: string): void {
      setTimeout(() => super.close(code, reason), 300);
    }
  }
  for (let n = 1; n <= 5; n++) {
    const agent = await room.agent("worker", { team, WebSocket: SlowToClose });
    expect((await agent.publish("worker.shift", { n })).seq).toBe(n);
    // The next instance connects right after: the room must already have let this one go.
    await agent.close();
  }
  await eventually(() => expect(watcher.agents().map((a) => a.agent)).toEqual(["watcher"]));
  await watcher.close();
});
