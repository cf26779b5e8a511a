/**
 * The unread budget (`flow.ts`) on the room alone, with sockets that record what they are
 * sent: who is held to it, what a `read` frame takes off, and what happens past it. The same
 * over a real `partykit dev` with a socket that stops reading is `test/slow-reader.test.ts`.
 */

import { describe, expect, it, vi } from "vitest";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { CLOSE_CODES, encodeDocFrame, readFrame } from "../protocol/index.ts";
import { TeamRoom } from "./room.ts";
import type { KvStorage } from "./storage.ts";

const empty: KvStorage = {
  get: async () => undefined,
  list: async () => new Map(),
  put: async () => {},
  delete: async () => 0,
};

const BUDGET = 4096;
const settle = () => new Promise((r) => setTimeout(r, 20));

function connect(room: TeamRoom, query: string) {
  const sent: (string | Uint8Array)[] = [];
  const socket = {
    send: (d: string | ArrayBuffer | ArrayBufferView) => sent.push(d as string),
    close: vi.fn(),
  };
  room.connect(socket, new URL(`http://room/parties/main/acme?${query}`));
  /** What the client would count: text in UTF-16 units, binary in bytes. */
  const units = () => sent.reduce((n, d) => n + (typeof d === "string" ? d.length : d.byteLength), 0);
  const welcome = () => JSON.parse(sent[0] as string);
  return { socket, sent, units, welcome };
}

/** `who` follows stream `main` (syncs its log document). */
async function follow(room: TeamRoom, who: ReturnType<typeof connect>) {
  room.message(
    who.socket,
    encodeDocFrame("log/main", (e) => syncProtocol.writeSyncStep1(e, new Y.Doc())),
  );
  await settle();
}

let published = 0;
async function publish(room: TeamRoom, by: ReturnType<typeof connect>, count: number) {
  const events = Array.from({ length: count }, () => ({
    id: `e-${++published}`,
    type: "tick",
    data: { pad: "x".repeat(200) },
  }));
  room.message(by.socket, JSON.stringify({ type: "publish", ref: `p${published}`, stream: "main", events }));
  await settle();
}

describe("the unread budget", () => {
  it("is given in the welcome to every agent, whether it says it reports its reads or not", () => {
    const room = new TeamRoom({ team: "acme", storage: empty, limits: { maxUnreadBytes: BUDGET } });
    expect(connect(room, "agent=a&flow=1").welcome()).toMatchObject({ type: "welcome", unreadBudget: BUDGET });
    expect(connect(room, "agent=b").welcome()).toMatchObject({ type: "welcome", unreadBudget: BUDGET });
  });

  it("closes a reader that stops reading with SlowReader, and sends it nothing more", async () => {
    const room = new TeamRoom({ team: "acme", storage: empty, limits: { maxUnreadBytes: BUDGET } });
    const stuck = connect(room, "agent=stuck&flow=1");
    const old = connect(room, "agent=old");
    const pub = connect(room, "agent=pub");
    await follow(room, stuck);
    await follow(room, old);
    for (let i = 0; i < 10 && stuck.socket.close.mock.calls.length === 0; i++) await publish(room, pub, 5);
    const { code, reason } = CLOSE_CODES.SlowReader;
    expect(stuck.socket.close).toHaveBeenCalledWith(code, reason);
    // Past the budget by at most the last frame sent before it was found behind.
    const frames = stuck.sent.length;
    expect(stuck.units()).toBeGreaterThan(BUDGET);
    await publish(room, pub, 5);
    expect(stuck.sent.length).toBe(frames);
    // A client that never says it reports its reads (no `flow=1`) is held to the budget too.
    expect(old.socket.close).toHaveBeenCalledWith(code, reason);
  });

  it("keeps a reader that reports its reads, whether spelt canonically or not", async () => {
    const room = new TeamRoom({ team: "acme", storage: empty, limits: { maxUnreadBytes: BUDGET } });
    const reader = connect(room, "agent=reader&flow=1");
    const pub = connect(room, "agent=pub");
    await follow(room, reader);
    let reported = 0;
    for (let i = 0; i < 20; i++) {
      await publish(room, pub, 5);
      const units = reader.units();
      // Every other report through dispatch (other JSON spelling), the rest on the fast path.
      room.message(
        reader.socket,
        i % 2 ? readFrame(units - reported) : JSON.stringify({ bytes: units - reported, type: "read" }),
      );
      reported = units;
      await settle();
    }
    expect(reader.units()).toBeGreaterThan(4 * BUDGET);
    expect(reader.socket.close).not.toHaveBeenCalled();
    // A malformed report is refused like any bad frame, not taken as read.
    room.message(reader.socket, '{"type":"read","bytes":-5}');
    await settle();
    expect(JSON.parse(reader.sent.at(-1) as string)).toMatchObject({ type: "error", error: { code: "BAD_FRAME" } });
  });
});
