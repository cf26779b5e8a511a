/**
 * What a stream remembers when it is loaded again (`Streams` load): the dedupe window is
 * rebuilt from the archive indexes, read a page at a time, newest first, and kept oldest
 * first within `dedupeMaxIds`; the live window's ids come straight from its entries. In
 * process, with a small window so a dozen segments reach the archive quickly.
 */
import { describe, expect, it } from "vitest";
import type { StoredEvent } from "../client/index.ts";
import { LOG_SEGMENT_SIZE } from "../protocol/index.ts";
import { createTestRoom, eventually } from "./harness.ts";

const SEGMENTS = 13;
/** The newest 10 archived segments' ids, less what the live window takes of the same budget. */
const DEDUPE_MAX_IDS = 10 * LOG_SEGMENT_SIZE;

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("a stream loaded again after a restart", () => {
  it("dedupes ids of the newest archived segments and of the window, forgets the oldest, and replays everything", async () => {
    await using room = createTestRoom({ streams: { window: LOG_SEGMENT_SIZE, dedupeMaxIds: DEDUPE_MAX_IDS } });
    const team = room.team("reload");
    const pub = await room.agent("pub", { team });
    const N = SEGMENTS * LOG_SEGMENT_SIZE;
    for (let n = 1; n <= N; n += 512)
      await pub.publishBatch(
        range(n, Math.min(N, n + 511)).map((i) => ({ type: "tick", data: { i }, options: { id: `e-${i}` } })),
      );
    // Every segment older than the window is archived (its index written) before the crash.
    const indexes = () => [...room.storage(team).data.keys()].filter((k) => k.startsWith("arcidx|main|")).length;
    await eventually(() => expect(indexes()).toBe(SEGMENTS - 1), { timeoutMs: 20_000 });
    await pub.close();
    await room.kill();
    await room.restart();

    const again = await room.agent("pub2", { team });
    // The load remembers the 10 newest indexes (12 archived: more than one page of them), and
    // the window's 1,024 ids count against the same budget: the oldest of those 10 goes too.
    const seqOf = (segment: number) => segment * LOG_SEGMENT_SIZE + 1;
    const inWindow = await again.publish("tick", { i: N }, { id: `e-${N}` });
    expect(inWindow).toMatchObject({ seq: N, duplicate: true });
    for (const segment of [3, 7, 11]) {
      const seq = seqOf(segment);
      expect(await again.publish("tick", { i: seq }, { id: `e-${seq}` })).toMatchObject({ seq, duplicate: true });
      const last = seq + LOG_SEGMENT_SIZE - 1;
      expect(await again.publish("tick", { i: last }, { id: `e-${last}` })).toMatchObject({
        seq: last,
        duplicate: true,
      });
    }
    // Past the budget: segment 2 was the oldest of the ten read, and was dropped first.
    const forgotten = seqOf(2);
    expect(await again.publish("tick", { i: forgotten }, { id: `e-${forgotten}` })).toMatchObject({
      seq: N + 1,
      duplicate: false,
    });
    const fresh = await again.publish("tick", { i: 0 }, { id: "fresh" });
    expect(fresh).toMatchObject({ seq: N + 2, duplicate: false });

    // A replay from the first seq reads the whole history, archive and window, once each.
    const seen: StoredEvent[] = [];
    const reader = await room.agent("reader", { team });
    await reader.subscribe(">", (e) => void seen.push(e), { from: "start" }).ready;
    await eventually(() => expect(seen.length).toBe(N + 2), { timeoutMs: 30_000 });
    expect(seen.map((e) => e.seq)).toEqual(range(1, N + 2));
    expect(seen.slice(0, N).map((e) => e.id)).toEqual(range(1, N).map((i) => `e-${i}`));
    await Promise.all([again.close(), reader.close()]);
  });
});
