/**
 * A CPU profile of the room through the inspector, as `bench/profile-fanout.ts` takes one
 * (`ROOM_PROFILE`): under `wrangler dev` (partykit's workerd samples the room a few dozen
 * times a second at most; `testing/inspector.ts`), found by `wranglerInspector`, with the
 * room's own functions in its samples.
 */
import { expect, it } from "vitest";
import { inspectorSession, wranglerInspector } from "../testing/inspector.ts";
import { startRoom } from "./harness.ts";

it("profiles the room under wrangler: samples that hold the room's own functions", { timeout: 120_000 }, async () => {
  await using room = await startRoom({ host: "wrangler" });
  const agent = await room.agent("writer");
  await agent.publish("warm", {});
  const session = await inspectorSession(wranglerInspector(room.port), "room profile");
  try {
    await session.call("Profiler.enable");
    await session.call("Profiler.start");
    for (let i = 0; i < 20; i++)
      await Promise.all(Array.from({ length: 100 }, (_, k) => agent.publish("tick", { i, k })));
    const { profile } = (await session.call("Profiler.stop")) as {
      profile: { nodes: { id: number; callFrame: { functionName: string } }[]; samples: number[] };
    };
    const names = new Map(profile.nodes.map((n) => [n.id, n.callFrame.functionName]));
    // Samples in the room's own code, the stream append among the stacks.
    const own = profile.samples.filter((id) => !names.get(id)?.startsWith("("));
    expect(own.length).toBeGreaterThan(0);
    expect(profile.nodes.map((n) => n.callFrame.functionName)).toContain("append");
  } finally {
    session.close();
    await agent.close();
  }
});
