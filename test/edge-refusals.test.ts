/**
 * What the connect URL alone decides (protocol version, a stock Yjs client's document name) is
 * refused at the edge (`party/server.ts` `onBeforeConnect`), before the room is touched: the
 * refused client learns its named code at once. Refused inside the hibernating room instead,
 * the close frame came at once but workerd ended the TCP connection only ~10 s later, and a
 * Node `ws` client reports the close only then. (A socket count needs the room: 4408 is still
 * decided there, `test/limits.test.ts`.)
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { AUDIT_STREAM, CLOSE_CODES, PROTOCOL_VERSION } from "../protocol/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";
import { rawSocket } from "./raw-socket.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const url = async (team: string, agent: string, query: string) =>
  `ws://${room.host}/parties/main/${team}?agent=${agent}&${query}&token=${await room.token(agent, "agent", { team })}`;

/** Opens a socket the room should refuse: its close code and reason. */
async function refused(address: string): Promise<{ code: number; reason: string }> {
  const socket = await rawSocket(room, address);
  const { code, reason } = await socket.closed;
  return { code, reason };
}

it("refuses an unsupported protocol version and a bad document name at the edge, with 4400", async () => {
  const team = room.team("edge");
  const version = await refused(await url(team, "a", "v=999"));
  expect(version).toMatchObject({
    code: CLOSE_CODES.BadRequest.code,
    reason: `bad request: invalid protocol version 999 (this room speaks ${PROTOCOL_VERSION})`,
  });
  const doc = await refused(await url(team, "a", `v=${PROTOCOL_VERSION}&doc=not%20a%20doc`));
  expect(doc).toMatchObject({ code: CLOSE_CODES.BadRequest.code, reason: "bad request: invalid doc or agent" });
  // Refused by the edge, not the room: the team's audit says where (a room refusal has no `at`).
  const ops = await room.agent("ops", { team, role: "admin" });
  await eventually(async () => {
    const refusals: unknown[] = [];
    for await (const e of ops.history({ stream: AUDIT_STREAM }))
      if (e.type === "audit.connection.refused") refusals.push(e.data);
    expect(refusals).toEqual([
      expect.objectContaining({ agent: "a", claimed: "a", code: CLOSE_CODES.BadRequest.code, at: "edge" }),
      expect.objectContaining({ agent: "a", claimed: "a", code: CLOSE_CODES.BadRequest.code, at: "edge" }),
    ]);
  });
  // Only the URL was refused: the same agent with a good one is admitted.
  const ok = await rawSocket(room, await url(team, "a", `v=${PROTOCOL_VERSION}`));
  await eventually(() => expect(ok.frames[0]?.type).toBe("welcome"));
  ok.close();
});
