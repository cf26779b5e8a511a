/**
 * The router's in-doubt idempotent calls, in-process, without a server: a callee whose
 * socket is replaced (the same client reconnecting, or a signed takeover) gets the call again
 * once, after its welcome. Over real sockets: test/rpc.test.ts.
 */
import { describe, expect, it, vi } from "vitest";
import { type Identity, PROTOCOL_VERSION, type RoomFrame } from "../protocol/index.ts";
import { MemoryKv } from "./memory-storage.ts";
import { TeamRoom } from "./room.ts";

const settle = () => new Promise((r) => setTimeout(r, 20));

function connect(room: TeamRoom, query: string, identity?: Identity) {
  const sent: RoomFrame[] = [];
  const socket = { send: (d: unknown) => void (typeof d === "string" && sent.push(JSON.parse(d))), close: vi.fn() };
  room.connect(socket, new URL(`http://room/parties/main/acme?v=${PROTOCOL_VERSION}&${query}`), identity);
  const send = (frame: Record<string, unknown>) => room.message(socket, JSON.stringify(frame));
  return { socket, sent, send, types: () => sent.map((f) => f.type) };
}

/** An idempotent call of `quote` on legal-1 under key `k1` (optionally to another target or method). */
const quoteCall = (ref: string, to: unknown = "legal-1", method = "quote") => ({
  type: "rpc.call",
  ref,
  to,
  method,
  input: {},
  timeoutMs: 5000,
  idempotencyKey: "k1",
});

/** A callee serving `quote`, and a caller whose idempotent call to it is running. */
async function callRunning(room: TeamRoom, identity?: Identity) {
  const callee = connect(room, "agent=legal-1&_pk=one", identity);
  callee.send({ type: "rpc.handle", methods: ["quote"] });
  const caller = connect(room, "agent=sales-1&_pk=c", identity && { agent: "sales-1", role: "agent" });
  await settle();
  caller.send(quoteCall("r1"));
  await settle();
  expect(callee.types()).toContain("rpc.request");
  return { callee, caller };
}

describe("an in-doubt idempotent call", () => {
  it("goes to the callee's replacing socket once, after its welcome", async () => {
    const room = new TeamRoom({ team: "acme", storage: new MemoryKv() });
    await callRunning(room);
    const again = connect(room, "agent=legal-1&_pk=one");
    await settle();
    expect(again.types()).toEqual(["welcome", "rpc.request"]);
  });

  it("goes to a signed takeover's socket once, after its welcome", async () => {
    const room = new TeamRoom({ team: "acme", storage: new MemoryKv() });
    const identity = { agent: "legal-1", role: "agent" };
    await callRunning(room, identity);
    const other = connect(room, "agent=legal-1&_pk=two", identity);
    await settle();
    expect(other.types()).toEqual(["welcome", "rpc.request"]);
  });
});

describe("an idempotent call whose callee is replaced while the room records it", () => {
  it("is sent to the new socket once", async () => {
    const storage = new MemoryKv();
    let release: () => void = () => {};
    const put = storage.put.bind(storage);
    const room = new TeamRoom({ team: "acme", storage });
    const callee = connect(room, "agent=legal-1&_pk=one");
    callee.send({ type: "rpc.handle", methods: ["quote"] });
    const caller = connect(room, "agent=sales-1&_pk=c");
    await settle();
    // Hold the `runningOn` record's write until the callee's socket has been replaced.
    storage.put = async (entries) => {
      if (Object.keys(entries).some((k) => k.startsWith("idem|"))) await new Promise<void>((r) => (release = r));
      return put(entries);
    };
    caller.send(quoteCall("r1"));
    await settle();
    const again = connect(room, "agent=legal-1&_pk=one");
    await settle();
    release();
    await settle();
    expect(callee.types()).not.toContain("rpc.request");
    expect(again.types()).toEqual(["welcome", "rpc.request"]);
  });
});

describe("an idempotency key", () => {
  it("names one call: a different method or target under it gets CONFLICT, running or after a room restart", async () => {
    const storage = new MemoryKv();
    const room = new TeamRoom({ team: "acme", storage });
    const { caller } = await callRunning(room);
    const call = (ref: string, to: unknown, method: string) => caller.send(quoteCall(ref, to, method));
    const answer = (ref: string) => caller.sent.find((f) => f.type === "rpc.response" && f.ref === ref);
    call("r2", "legal-1", "approve");
    call("r3", "hr-1", "quote");
    await settle();
    expect(answer("r2")).toMatchObject({ ok: false, error: { code: "CONFLICT" } });
    expect(answer("r3")).toMatchObject({ ok: false, error: { code: "CONFLICT" } });

    // After a restart the stored record (runningOn) keeps the call's identity too.
    const restarted = new TeamRoom({ team: "acme", storage });
    const hr = connect(restarted, "agent=hr-1&_pk=h");
    hr.send({ type: "rpc.handle", methods: ["payroll"] });
    const again = connect(restarted, "agent=sales-1&_pk=c2");
    await settle();
    again.send(quoteCall("r4", "hr-1", "payroll"));
    await settle();
    expect(again.sent.find((f) => f.type === "rpc.response")).toMatchObject({ ok: false, error: { code: "CONFLICT" } });
    expect(hr.types()).not.toContain("rpc.request");
  });
});
