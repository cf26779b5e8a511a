/**
 * The soak: 10 agents each loop publish → call a neighbour → `state.set` on 500 rotating
 * keys, against one room, for {@link SOAK_MS}. Memory must follow activity, not history:
 * after the warm-up (first third), the heap's last third sits within 15 MB of its middle
 * third, and it stays under 64 MB throughout.
 *
 * In process (`createTestRoom`), because only there can the heap be read after a forced GC
 * (`v8.setFlagsFromString("--expose-gc")`). The heap holds the ten agents' copies too, so it
 * bounds the room's from above; what the in-memory storage holds (on disk in a real room) is
 * subtracted. The real server's RSS under the same load is the bench `soak` scenario.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Team } from "../client/index.ts";
import { createTestRoom, type TestRoom } from "./harness.ts";

const SOAK_MS = 180_000;
const AGENTS = 10;
const KEYS = 500;
const SAMPLE_MS = 5_000;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

let room: TestRoom;
beforeAll(() => {
  room = createTestRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** What the in-memory storage holds on the heap (strings and JSON records; binary parts live off it). */
function storedBytes(team: string): number {
  let n = 0;
  for (const v of room.storage(team).data.values()) {
    if (typeof v === "string") n += v.length;
    else if (!(v instanceof Uint8Array)) n += JSON.stringify(v).length;
  }
  return n;
}

it(
  `keeps the room's heap flat under a mixed load (${SOAK_MS / 60_000} minutes)`,
  async () => {
    const team = "soak";
    const agents: Team[] = [];
    for (let i = 0; i < AGENTS; i++) agents.push(await room.agent(`soak-${i}`, { team }));
    for (const a of agents) a.handle("echo", (input) => input);
    await Promise.all(agents.map((a) => a.state("soak").ready));
    // Every agent sees every other's method before the calls start.
    await new Promise((r) => setTimeout(r, 500));

    let stop = false;
    let ops = 0;
    const loops = agents.map(async (a, i) => {
      const ns = a.state<{ v: number; by: number }>("soak");
      for (let k = 0; !stop; k++) {
        await a.publish("soak.tick", { i, k });
        await a.call(`soak-${(i + 1) % AGENTS}`, "echo", { k });
        ns.set(`k${(i * 50 + k) % KEYS}`, { v: k, by: i });
        ops++;
      }
    });

    const heapMb = () => {
      gc();
      gc();
      return (process.memoryUsage().heapUsed - storedBytes(team)) / 1e6;
    };
    const samples: { at: number; mb: number }[] = [];
    const started = Date.now();
    while (Date.now() - started < SOAK_MS) {
      await new Promise((r) => setTimeout(r, SAMPLE_MS));
      samples.push({ at: Date.now() - started, mb: heapMb() });
    }
    stop = true;
    await Promise.all(loops);
    await Promise.all(agents.map((a) => a.close()));

    const third = (n: number) =>
      samples.filter((s) => s.at > (SOAK_MS * n) / 3 && s.at <= (SOAK_MS * (n + 1)) / 3).map((s) => s.mb);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const middle = mean(third(1));
    const last = mean(third(2));
    console.log(
      `soak: ${ops} loops (publish + call + set) in ${SOAK_MS / 1000} s; heap MB ${samples.map((s) => s.mb.toFixed(1)).join(" ")}`,
    );
    expect(ops).toBeGreaterThan(1000);
    expect(Math.abs(last - middle)).toBeLessThan(15);
    expect(Math.max(...samples.map((s) => s.mb))).toBeLessThan(64);
  },
  SOAK_MS + 120_000,
);
