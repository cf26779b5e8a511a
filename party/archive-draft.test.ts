/**
 * A segment's archive is drafted ahead, a few events with each append (`streams.ts`
 * `#draftArchive`), so that archiving costs a put instead of encoding 1,024 events at once. The
 * archive records must be exactly what encoding the whole segment at once wrote: the same JSON
 * text of the same events, and the same index, whatever mix of single appends and bursts
 * built the segment, and whether or not the room restarted with a draft half done.
 */
import { describe, expect, it } from "vitest";
import type { StoredEvent } from "../protocol/index.ts";
import { createTestRoom, eventually } from "../test/harness.ts";
import { keys, pad } from "./keys.ts";
import { type ArchiveIndex, DRAFT_MAX_CHARS } from "./streams.ts";

const SEG = 1024;
const WINDOW = 1024;

/** The archive records of `stream`'s segment `segNo`: its JSON text (parts joined) and its index. */
async function archived(storage: ReturnType<ReturnType<typeof createTestRoom>["storage"]>, segNo: number) {
  const parts = await storage.list<string>({ prefix: keys.archivePrefix("main", segNo) });
  const index = await storage.get<ArchiveIndex>(keys.archiveIndexPrefix("main") + pad(segNo));
  return { text: [...parts.values()].join(""), index };
}

/** A room with the small window, a writer, and every event a reader was sent live from the start. */
async function drafting(team: string) {
  const room = createTestRoom({ streams: { window: WINDOW } });
  const writer = await room.agent("writer", { team });
  const live: StoredEvent[] = [];
  const reader = await room.agent("reader", { team });
  await reader.subscribe(">", (e) => void live.push(e), { from: "start" }).ready;
  return { room, writer, reader, live };
}

describe("archive drafting", () => {
  it("archives exactly the JSON of each whole segment and its index, for single appends and bursts alike, across a restart mid-draft", {
    timeout: 120_000,
  }, async () => {
    const team = "drafts";
    // `live`: what a subscriber was sent from the live window, before its segment was archived:
    // the events as the room stored them, decoded by the same `storedEvent` the archive uses.
    const { room, writer, reader, live } = await drafting(team);

    let n = 0;
    const singles = async (count: number) => {
      for (let i = 0; i < count; i++) await writer.publish("tick", { n: n++, note: "one append each" });
    };
    const burst = async (count: number) => {
      await Promise.all(Array.from({ length: count }, () => writer.publish("tick", { n: n++, note: "a burst" })));
    };

    // Segment 0 is full at 1,024; drafting starts once it is within a segment of archiving
    // (head 1,024) and archiving at head 2,048: single appends all the way (a full draft).
    await singles(2100);
    // A burst outruns drafting: segment 1's draft is partly done, the archive finishes it.
    await burst(1500);
    // Half of segment 2's draft by single appends, then the room dies and the draft with it.
    await singles(1000 + 300);
    await eventually(() => expect(live.length).toBe(n), { timeoutMs: 30_000 });
    await room.kill();
    await room.restart();
    await eventually(() => expect(writer.status).toBe("online"), { timeoutMs: 20_000 });
    await singles(1400);
    await eventually(() => expect(live.length).toBe(n), { timeoutMs: 30_000 });

    expect(live.map((e) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const storage = room.storage(team);
    const head = n;
    const archivedSegments = Math.floor((head - WINDOW) / SEG);
    expect(archivedSegments).toBeGreaterThanOrEqual(4);
    for (let segNo = 0; segNo < archivedSegments; segNo++) {
      const events = live.slice(segNo * SEG, (segNo + 1) * SEG);
      const { text, index } = await archived(storage, segNo);
      expect(text).toBe(JSON.stringify(events));
      expect(index).toEqual({
        ids: events.map((e) => e.id),
        seqs: [segNo * SEG + 1, (segNo + 1) * SEG],
        lastTs: events.at(-1)?.ts,
      });
    }
    // Nothing archived beyond what left the window.
    expect((await archived(storage, archivedSegments)).index).toBeUndefined();

    // The index is what dedupe recalls archived ids by: a re-publish of one is a duplicate with its seq.
    const old = live[5] as StoredEvent;
    const again = await writer.publish("tick", { n: -1 }, { id: old.id });
    expect(again).toMatchObject({ id: old.id, seq: old.seq, duplicate: true });
    await writer.close();
    await reader.close();
  });

  it("archives exactly the whole segment when its events are too big to draft it all (the drafts' cap)", {
    timeout: 120_000,
  }, async () => {
    const team = "big-drafts";
    const { room, writer, reader, live } = await drafting(team);
    // 2 KB events: a segment is ~2 M characters of JSON, twice what drafts may hold.
    const text = "x".repeat(2000);
    for (let n = 0; n < 2 * SEG + 100; n++) await writer.publish("big", { n, text });
    await eventually(() => expect(live.length).toBe(2 * SEG + 100), { timeoutMs: 30_000 });
    const { text: archivedText, index } = await archived(room.storage(team), 0);
    expect(archivedText.length).toBeGreaterThan(2 * DRAFT_MAX_CHARS);
    expect(archivedText).toBe(JSON.stringify(live.slice(0, SEG)));
    expect(index?.ids).toEqual(live.slice(0, SEG).map((e) => e.id));
    await writer.close();
    await reader.close();
  });
});
