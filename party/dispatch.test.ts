/**
 * Socket dispatch without a server: a text frame arriving while its session has nothing
 * unfinished is handled at once, and one whose handler waits (storage) holds the session's
 * next frames, so they keep their arrival order. (Calls end to end are in test/rpc.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { MemoryKv } from "./memory-storage.ts";
import { TeamRoom } from "./room.ts";

/** Storage whose reads answer a macrotask later, as a real store does. */
class SlowKv extends MemoryKv {
  override async get<T = unknown>(key: string): Promise<T | undefined> {
    await new Promise((r) => setImmediate(r));
    return super.get<T>(key);
  }
}

async function room() {
  const r = new TeamRoom({ team: "acme", storage: new SlowKv() });
  await r.start();
  const agent = (name: string) => {
    const texts: Record<string, unknown>[] = [];
    const socket = { send: (d: unknown) => void texts.push(JSON.parse(String(d))), close() {} };
    r.connect(socket, new URL(`http://room/?agent=${name}&role=agent&_pk=${name}`));
    return { socket, texts, send: (frame: object) => r.message(socket, JSON.stringify(frame)) };
  };
  const caller = agent("caller");
  const callee = agent("callee");
  callee.send({ type: "rpc.handle", methods: ["echo"] });
  // The roster tells the caller once the callee serves the method.
  await eventually(() => caller.texts.some((f) => JSON.stringify(f).includes('"methods":["echo"]')));
  return { caller, callee };
}

async function eventually(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(ok()).toBe(true);
}

const call = (ref: string, extra: object = {}) => ({
  type: "rpc.call",
  ref,
  to: "callee",
  method: "echo",
  input: { ref },
  timeoutMs: 30_000,
  ...extra,
});

describe("dispatch", () => {
  it("routes a call that arrives while its session is idle before message() returns", async () => {
    const { caller, callee } = await room();
    const before = callee.texts.length;
    caller.send(call("r1"));
    expect(callee.texts.slice(before)).toEqual([
      expect.objectContaining({ type: "rpc.request", input: { ref: "r1" } }),
    ]);
    const id = (callee.texts.at(-1) as { id: string }).id;
    callee.send({ type: "rpc.result", id, ok: true, output: "done" });
    expect(caller.texts.at(-1)).toEqual({ type: "rpc.response", ref: "r1", ok: true, output: "done" });
  });

  it("holds a session's next frames behind one that waits for storage, in arrival order", async () => {
    const { caller, callee } = await room();
    const before = callee.texts.length;
    // The idempotent call reads its key's record first; the plain calls must not overtake it.
    caller.send(call("r1", { idempotencyKey: "k1" }));
    caller.send(call("r2"));
    caller.send(call("r3"));
    expect(callee.texts.length).toBe(before);
    await eventually(() => callee.texts.length === before + 3);
    expect(callee.texts.slice(before).map((f) => (f.input as { ref: string }).ref)).toEqual(["r1", "r2", "r3"]);
    // Once the queue has drained, a frame is handled at once again.
    caller.send(call("r4"));
    expect(callee.texts.at(-1)).toEqual(expect.objectContaining({ input: { ref: "r4" } }));
  });
});
