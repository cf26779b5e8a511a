/**
 * The kit's inspector client (`testing/inspector.ts`), against this process's own V8
 * inspector: replies to calls, and events (what `bench/profile-rpc.ts` reads the room's
 * bundle with, `Debugger.scriptParsed`). The partykit side is exercised by `heap()` in
 * `testing-kit.test.ts`.
 */
import inspector from "node:inspector";
import { afterAll, beforeAll, expect, it } from "vitest";
import { inspectorSession } from "../testing/inspector.ts";
import { eventually } from "./harness.ts";

let address = "";
beforeAll(() => {
  inspector.open(0, "127.0.0.1");
  address = new URL(inspector.url() as string).host;
});
afterAll(() => inspector.close());

it("answers calls and hands events to their listener", async () => {
  const session = await inspectorSession(address, "test");
  try {
    const scripts: { url: string }[] = [];
    session.on("Debugger.scriptParsed", (params) => scripts.push(params as { url: string }));
    await session.call("Debugger.enable");
    // Enabling reports every script already parsed, this test file among them.
    await eventually(() => expect(scripts.some((s) => s.url.includes("inspector.test.ts"))).toBe(true));
    const { result } = (await session.call("Runtime.evaluate", { expression: "6 * 7" })) as {
      result: { value: number };
    };
    expect(result.value).toBe(42);
    await expect(session.call("No.suchMethod")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await session.call("Debugger.disable");
  } finally {
    session.close();
  }
});
