/**
 * A plain call (no retries, nothing to seal) is its one attempt's promise, without an async
 * layer around it, and a callee answers a handler's plain value in the same tick
 * (`client/rpc.ts`): what each still guarantees, over a real room.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Json } from "../client/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const serving = async (team: string) => {
  const caller = await room.agent("caller", { team });
  const callee = await room.agent("callee", { team });
  return { caller, callee };
};
const served = (caller: Awaited<ReturnType<typeof serving>>["caller"], method: string) =>
  eventually(() => expect(caller.agents().find((a) => a.agent === "callee")?.methods ?? []).toContain(method));

describe("a plain call", () => {
  it("rejects bad arguments, never throws them", async () => {
    const { caller } = await serving(room.team("plain-args"));
    const calls = [
      () => caller.call("callee", "echo", 1, { timeoutMs: 0 }),
      () => caller.call("callee", "echo", 1, { retries: -1 }),
      () => caller.call("callee", "not a method", 1),
      () => caller.call("not a name!", "echo", 1),
      () => caller.call("callee", "echo", { big: "x".repeat(2_000_000) }),
    ];
    for (const call of calls) {
      let promise: Promise<unknown> | undefined;
      expect(() => {
        promise = call();
      }).not.toThrow();
      await expect(promise).rejects.toMatchObject({ code: expect.stringMatching(/INVALID_ARGUMENT|TOO_LARGE/) });
    }
    await caller.close();
    await expect(caller.call("callee", "echo", 1)).rejects.toMatchObject({ code: "CLOSED" });
  });

  it("resolves with the callee's answer, fails with its error, and with TARGET_GONE when the callee leaves", async () => {
    const team = room.team("plain-answers");
    const { caller, callee } = await serving(team);
    let runs = 0;
    callee.handle("echo", (input) => input);
    callee.handle("boom", () => {
      throw new Error("no");
    });
    await served(caller, "boom");
    expect(await caller.call("callee", "echo", { a: [1, "two"] })).toEqual({ a: [1, "two"] });
    await expect(caller.call("callee", "boom")).rejects.toMatchObject({ code: "HANDLER_ERROR", message: "no" });
    callee.handle("flaky", () => {
      runs++;
      return new Promise(() => {});
    });
    await served(caller, "flaky");
    const plain = caller.call("callee", "flaky", null, { timeoutMs: 20_000 });
    await eventually(() => expect(runs).toBe(1));
    await callee.close();
    await expect(plain).rejects.toMatchObject({ code: "TARGET_GONE" });
  });
});

describe("a callee's answer", () => {
  it("awaits promises and thenables, and sends any other value as it is, then-keys included", async () => {
    const { caller, callee } = await serving(room.team("plain-thenables"));
    callee.handle("promise", async (input) => input);
    // biome-ignore lint/suspicious/noThenProperty: thenables are what this test is about
    callee.handle("thenable", () => ({ then: (resolve: (v: Json) => void) => resolve(42) }));
    callee.handle("rejecting", () => ({
      // biome-ignore lint/suspicious/noThenProperty: thenables are what this test is about
      then: (_: unknown, reject: (e: Error) => void) => reject(new Error("later")),
    }));
    // biome-ignore lint/suspicious/noThenProperty: a then key that is not a function is plain data
    callee.handle("data", () => ({ then: "not a function", n: 1 }));
    callee.handle("nothing", () => undefined);
    await served(caller, "nothing");
    expect(await caller.call("callee", "promise", [1, 2])).toEqual([1, 2]);
    expect(await caller.call("callee", "thenable")).toBe(42);
    await expect(caller.call("callee", "rejecting")).rejects.toMatchObject({ code: "HANDLER_ERROR", message: "later" });
    // biome-ignore lint/suspicious/noThenProperty: the data sent back
    expect(await caller.call("callee", "data")).toEqual({ then: "not a function", n: 1 });
    expect(await caller.call("callee", "nothing")).toBeNull();
  });
});
