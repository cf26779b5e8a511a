/**
 * The same room on both hosts: PartyKit (`partykit dev`, the default) and Cloudflare's
 * maintained stack (partyserver under `wrangler dev --local`, offline). One suite, run on
 * each: agents connect with signed tokens, publish and subscribe, sync state, call each
 * other, and find everything again after the server is killed and restarted.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe.each(["partykit", "wrangler"] as const)("the room on %s", (host) => {
  let room: RoomServer;
  beforeAll(async () => {
    room = await startRoom({ host });
  }, 180_000);
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });

  it("connects, publishes and subscribes, syncs state, calls, and keeps it all across a restart", async () => {
    const team = room.team("hosts");
    const [pub, sub, callee] = await Promise.all(["pub", "sub", "callee"].map((id) => room.agent(id, { team })));
    if (!pub || !sub || !callee) throw new Error("agents");
    await eventually(() =>
      expect(
        pub
          .agents()
          .map((a) => a.agent)
          .sort(),
      ).toEqual(["callee", "pub", "sub"]),
    );

    const seen: number[] = [];
    await sub.subscribe("order.*", (e) => void seen.push(e.seq), { from: "start" }).ready;
    for (const n of range(1, 20)) expect((await pub.publish("order.placed", { n })).seq).toBe(n);
    await eventually(() => expect(seen).toEqual(range(1, 20)));

    const deals = pub.state("deals");
    const mirror = sub.state("deals");
    await Promise.all([deals.ready, mirror.ready]);
    deals.set("D1", { stage: "open" });
    await eventually(() => expect(mirror.get("D1")).toEqual({ stage: "open" }));

    callee.handle("double", (n) => Number(n) * 2);
    await eventually(async () => expect(await pub.call("callee", "double", 21)).toBe(42));
    await expect(pub.call("nobody", "double", 1)).rejects.toMatchObject({ code: "NO_ROUTE" });

    // Tokens are checked at the edge on this host too.
    const refused = await room.fetch(`/parties/main/${team}/agents`, { headers: { authorization: "Bearer nope" } });
    expect(refused.status).toBe(401);

    await room.kill("SIGKILL");
    await room.restart();
    await eventually(() => expect([pub, sub, callee].map((a) => a.status)).toEqual(["online", "online", "online"]), {
      timeoutMs: 30_000,
    });
    expect((await pub.publish("order.placed", { n: 21 })).seq).toBe(21);
    await eventually(() => expect(seen).toEqual(range(1, 21)), { timeoutMs: 45_000 });
    const fresh = (await room.agent("late", { team })).state("deals");
    await fresh.ready;
    expect(fresh.get("D1")).toEqual({ stage: "open" });
    await eventually(async () => expect(await pub.call("callee", "double", 2)).toBe(4), { timeoutMs: 20_000 });
  }, 120_000);
});
