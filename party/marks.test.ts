/**
 * Outbox marks are bounded per agent (`marks.ts`): a sender that keeps coming back as new
 * instances leaves at most `MAX_MARKS_PER_AGENT` marks per channel in memory and storage, and
 * a resend from an evicted instance is still answered as a duplicate by its event id.
 */
import { describe, expect, it } from "vitest";
import { eventually } from "../testing/wait.ts";
import { keys } from "./keys.ts";
import { MAX_MARKS_PER_AGENT, OutboxMarks } from "./marks.ts";
import { MemoryKv } from "./memory-storage.ts";
import { TeamRoom } from "./room.ts";

const settle = () => new Promise((r) => setTimeout(r, 20));
/** Instance ids that sort in the order they were made, as UUIDv7s do. */
const instance = (i: number) => `i-${String(i).padStart(4, "0")}`;

describe("outbox marks", () => {
  it("keep the most recently used instances of each agent, in memory and storage", async () => {
    const storage = new MemoryKv();
    const prefix = (agent: string) => `m|${agent}|`;
    const marks = new OutboxMarks({ storage, prefix, make: (n) => ({ n }), max: 4 });
    for (let i = 0; i < 4; i++) {
      const mark = await marks.get("a", instance(i));
      mark.n = i + 1;
      await storage.put({ [prefix("a") + instance(i)]: mark.n });
    }
    // Instance 0 is used again: now the most recent; 1 is the least recent.
    expect((await marks.get("a", instance(0))).n).toBe(1);
    expect((await marks.get("b", instance(9))).n).toBe(0);
    const fresh = await marks.get("a", instance(4));
    fresh.n = 1;
    await storage.put({ [prefix("a") + instance(4)]: 1 });
    await settle();
    expect([...(await storage.list({ prefix: prefix("a") })).keys()]).toEqual(
      [0, 2, 3, 4].map((i) => prefix("a") + instance(i)),
    );
    // Evicted: it starts again from nothing.
    expect((await marks.get("a", instance(1))).n).toBe(0);
    expect((await marks.get("a", instance(3))).n).toBe(4);

    // After a restart, an agent's stored marks are loaded (oldest instance evicted first).
    const reloaded = new OutboxMarks({ storage, prefix, make: (n) => ({ n }), max: 2 });
    expect((await reloaded.get("a", instance(4))).n).toBe(1);
    await settle();
    expect([...(await storage.list({ prefix: prefix("a") })).keys()]).toEqual(
      [3, 4].map((i) => prefix("a") + instance(i)),
    );
  });

  it("on a stream: an agent coming back as ever new instances leaves a bounded set, and resends stay duplicates", async () => {
    const storage = new MemoryKv();
    const room = new TeamRoom({ team: "acme", storage });
    const sent: string[] = [];
    const socket = { send: (d: string | ArrayBuffer | ArrayBufferView) => sent.push(d as string), close: () => {} };
    room.connect(socket, new URL("http://room/parties/main/acme?agent=flaky"));
    const publish = async (i: number) => {
      const ref = `p${i}-${sent.length}`;
      const frame = {
        type: "publish",
        ref,
        stream: "main",
        events: [{ id: `e-${i}`, type: "tick", data: { i } }],
        outbox: { instance: instance(i), n: 1 },
      };
      room.message(socket, JSON.stringify(frame));
      return eventually(() => {
        const reply = sent.map((t) => JSON.parse(t)).find((f) => f.ref === ref);
        if (!reply) throw new Error(`no answer to ${ref}`);
        return reply;
      });
    };
    const total = MAX_MARKS_PER_AGENT + 6;
    for (let i = 0; i < total; i++)
      expect(await publish(i)).toMatchObject({ type: "publish.ack", results: [{ duplicate: false }] });
    const stored = [...(await storage.list({ prefix: keys.outboxStream("flaky", "main", "") })).keys()];
    expect(stored.length).toBe(MAX_MARKS_PER_AGENT);
    expect(stored[0]).toBe(keys.outboxStream("flaky", "main", instance(6)));
    // Instance 0's mark is gone; its resend is known by the event id instead, with its seq.
    expect(await publish(0)).toMatchObject({ type: "publish.ack", results: [{ id: "e-0", seq: 1, duplicate: true }] });
    // A kept instance's resend is known by its mark.
    expect(await publish(total - 1)).toMatchObject({ results: [{ id: `e-${total - 1}`, duplicate: true }] });
  });
});
