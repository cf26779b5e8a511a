/**
 * The room's composition, without a server: every client frame type has exactly one
 * handler, and every access goes through `policy.authorize` before it reaches a module.
 * (End-to-end behaviour over real sockets is in test/.)
 */
import * as encoding from "lib0/encoding";
import { beforeEach, describe, expect, it, vi } from "vitest";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { clientFrames, type ErrorBody, encodeDocFrame, Y_MESSAGE_SYNC } from "../protocol/index.ts";
import { authorize } from "./policy.ts";
import { TeamRoom } from "./room.ts";
import type { KvStorage } from "./storage.ts";

vi.mock("./policy.ts", () => ({ authorize: vi.fn((): ErrorBody | null => null) }));
const policy = vi.mocked(authorize);

/** Storage that holds nothing: enough for documents that start empty. */
const empty: KvStorage = {
  get: async () => undefined,
  list: async () => new Map(),
  put: async () => {},
  delete: async () => 0,
};

function connect(room: TeamRoom, query: string) {
  const sent: (string | Uint8Array)[] = [];
  const socket = { send: (d: string | ArrayBuffer | ArrayBufferView) => sent.push(d as string), close: vi.fn() };
  room.connect(socket, new URL(`http://room/parties/main/acme?${query}`));
  const settle = () => new Promise((r) => setTimeout(r, 20));
  return { socket, sent, settle, texts: () => sent.filter((d) => typeof d === "string").map((d) => JSON.parse(d)) };
}

const bytesOf = (write: (e: encoding.Encoder) => void) => {
  const e = encoding.createEncoder();
  write(e);
  return encoding.toUint8Array(e);
};

beforeEach(() => policy.mockClear());

describe("the dispatch table", () => {
  it("has exactly one handler per client frame type", () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    expect(Object.keys(room.handlers).sort()).toEqual(Object.keys(clientFrames).sort());
  });
});

describe("policy.authorize", () => {
  it("is asked before every control frame, and its refusal is the answer", async () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    const a = connect(room, "agent=a&role=sales");
    policy.mockReturnValueOnce({ code: "FORBIDDEN", message: "not you" });
    room.message(a.socket, JSON.stringify({ type: "lease.acquire", ref: "q1", name: "x", ttlMs: 1000 }));
    await a.settle();
    const frame = expect.objectContaining({ type: "lease.acquire", ref: "q1" });
    expect(policy).toHaveBeenCalledWith(expect.objectContaining({ agent: "a", role: "sales" }), "send", { frame });
    expect(a.texts().at(-1)).toEqual({ type: "error", ref: "q1", error: { code: "FORBIDDEN", message: "not you" } });
  });

  it("is asked for sync step 1 as a read and for updates as a write", async () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    const a = connect(room, "agent=a");
    room.message(
      a.socket,
      encodeDocFrame("state/deals", (e) => syncProtocol.writeSyncStep1(e, new Y.Doc())),
    );
    await a.settle();
    expect(policy).toHaveBeenLastCalledWith(expect.objectContaining({ agent: "a" }), "read", { doc: "state/deals" });
    const doc = new Y.Doc();
    doc.getMap("fields").set("k\u001ff", 1);
    const update = Y.encodeStateAsUpdate(doc);
    policy.mockReturnValueOnce({ code: "FORBIDDEN", message: "read-only" });
    room.message(
      a.socket,
      encodeDocFrame("state/deals", (e) => syncProtocol.writeUpdate(e, update)),
    );
    await a.settle();
    expect(policy).toHaveBeenLastCalledWith(expect.objectContaining({ agent: "a" }), "write", { doc: "state/deals" });
    expect(a.texts().at(-1)).toEqual({
      type: "error",
      doc: "state/deals",
      error: { code: "FORBIDDEN", message: "read-only" },
    });
  });

  it("is asked for a stock Yjs client's sync messages", async () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    const raw = connect(room, "doc=state/deals");
    const message = bytesOf((e) => {
      encoding.writeVarUint(e, Y_MESSAGE_SYNC);
      syncProtocol.writeSyncStep1(e, new Y.Doc());
    });
    room.message(raw.socket, message);
    await raw.settle();
    expect(policy).toHaveBeenLastCalledWith(expect.objectContaining({ role: "yjs" }), "read", { doc: "state/deals" });
  });

  it("is asked for every HTTP read, and its refusal is the response", async () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    expect((await room.request(new Request("http://room/parties/main/acme/agents"))).status).toBe(200);
    expect(policy).toHaveBeenLastCalledWith(null, "read", { http: "/parties/main/acme/agents" });
    policy.mockReturnValueOnce({ code: "UNAUTHORIZED", message: "who are you" });
    const refused = await room.request(new Request("http://room/parties/main/acme/metrics"));
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: { code: "UNAUTHORIZED", message: "who are you" } });
  });
});
