/**
 * Deflated binary frames (`protocol/deflate.ts`): the room sends a large document snapshot
 * compressed to agents and as it is to stock Yjs clients. A golden frame keeps the encoding
 * readable by later clients; hostile frames get typed errors; on a real `partykit dev`, an agent
 * loading a large namespace receives a fraction of its bytes, holds exactly what the room holds,
 * and keeps receiving live updates after it, while a stock y-websocket client still syncs. A
 * stream's log window reaches its subscribers deflated too, compressed once for those that sync
 * it together, and every event is still handled once, in order.
 */
import { readFileSync } from "node:fs";
import * as encoding from "lib0/encoding";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { inflateFrame } from "../client/inflate.ts";
import { BINARY_KIND_DEFLATED, DEFLATE_MIN_BYTES, decodeDocFrame, deflateFrame } from "../protocol/index.ts";
import { cuttableSocket, eventually, type RoomServer, startRoom } from "./harness.ts";

const golden = JSON.parse(readFileSync(new URL("./fixtures/deflated-frame.json", import.meta.url), "utf8")) as {
  deflated: string;
  frame: string;
};
const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, "base64"));

describe("deflated frames", () => {
  it("inflates the golden frame to its doc frame, and round-trips a fresh one", async () => {
    const inflated = inflateFrame(bytes(golden.deflated));
    if (!inflated.ok) throw new Error(inflated.error.message);
    expect(inflated.frame).toEqual(bytes(golden.frame));
    const decoded = decodeDocFrame(inflated.frame);
    expect(decoded.ok && decoded.frame.doc).toBe("state/golden");

    const frame = new Uint8Array(3 * DEFLATE_MIN_BYTES).map((_, i) => i % 251);
    const again = inflateFrame(await deflateFrame(frame));
    expect(again.ok && again.frame).toEqual(frame);
  });

  it("passes other frames through and refuses truncated, lying or oversized ones with a typed error", async () => {
    const plain = bytes(golden.frame);
    expect(inflateFrame(plain)).toEqual({ ok: true, frame: plain });

    const deflated = bytes(golden.deflated);
    const frameWith = (length: number, zlib: Uint8Array) => {
      const e = encoding.createEncoder();
      encoding.writeVarUint(e, BINARY_KIND_DEFLATED);
      encoding.writeVarUint(e, length);
      encoding.writeVarUint8Array(e, zlib);
      return encoding.toUint8Array(e);
    };
    const stream = new Response(
      new Blob([plain as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("deflate")),
    );
    const raw = new Uint8Array(await stream.arrayBuffer());
    const code = (frame: Uint8Array) => {
      const r = inflateFrame(frame);
      return r.ok ? "ok" : r.error.code;
    };
    expect(code(frameWith(plain.byteLength, raw))).toBe("ok");
    expect(code(deflated.subarray(0, deflated.byteLength - 5))).toBe("BAD_FRAME");
    expect(code(frameWith(plain.byteLength - 1, raw))).toBe("BAD_FRAME");
    expect(code(frameWith(plain.byteLength + 1, raw))).toBe("BAD_FRAME");
    expect(code(frameWith(plain.byteLength, raw.subarray(0, raw.byteLength - 4)))).toBe("BAD_FRAME");
    expect(code(frameWith(plain.byteLength, new Uint8Array([1, 2, 3, 4])))).toBe("BAD_FRAME");
    expect(code(frameWith(2 ** 40, raw))).toBe("TOO_LARGE");
  });
});

describe("a large namespace over a real room", () => {
  let room: RoomServer;
  beforeAll(async () => {
    room = await startRoom();
  }, 120_000);
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });

  it("reaches an agent deflated and a stock Yjs client as it is; live updates follow", async () => {
    const team = "deflate";
    const writer = await room.agent("writer", { team });
    const big = writer.state("big");
    await big.ready;
    big.transact(() => {
      for (let i = 0; i < 2000; i++) big.set(`deal-${i}`, { stage: "open", amount: i, owner: `agent-${i % 10}` });
    });
    const counter = cuttableSocket();
    const loader = await room.agent("loader", { team, WebSocket: counter.WebSocket });
    try {
      const seen = loader.state("big");
      await eventually(() => expect(seen.size).toBe(2000), { timeoutMs: 30_000 });
      expect(seen.toJSON()).toEqual(big.toJSON());
      const snapshot = Y.encodeStateAsUpdate(seen.doc).byteLength;
      expect(snapshot).toBeGreaterThan(DEFLATE_MIN_BYTES);
      // Everything the loader received (welcome, presence, the snapshot) is a fraction of the snapshot.
      expect(counter.bytesReceived).toBeLessThan(snapshot / 3);

      big.update("deal-7", { stage: "won" });
      await eventually(() => expect(seen.get("deal-7")).toEqual({ stage: "won", amount: 7, owner: "agent-7" }));

      const ydoc = new Y.Doc();
      const provider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, ydoc, {
        params: { doc: "state/big", token: await room.token("reader", "yjs", { team }) },
        WebSocketPolyfill: WebSocket as never,
        disableBc: true,
      });
      try {
        await eventually(() => expect(provider.synced).toBe(true), { timeoutMs: 30_000 });
        expect(ydoc.getMap("fields").get("deal-1999\u001famount")).toBe(1999);
        expect(ydoc.getMap("fields").get("deal-7\u001fstage")).toBe("won");
      } finally {
        provider.destroy();
      }
    } finally {
      await loader.close();
      await writer.close();
    }
  }, 120_000);

  it("sends a stream's log window deflated to subscribers syncing together; each event handled once, in order", async () => {
    const team = "deflate-log";
    const EVENTS = 3000;
    const writer = await room.agent("publisher", { team });
    for (let i = 0; i < EVENTS; i += 500) {
      await writer.publishBatch(
        Array.from({ length: 500 }, (_, k) => ({ type: "deal.updated", data: { n: i + k, note: "deflate me" } })),
      );
    }
    const counters = [cuttableSocket(), cuttableSocket()];
    const readers = await Promise.all(
      counters.map((c, i) => room.agent(`reader-${i}`, { team, WebSocket: c.WebSocket })),
    );
    try {
      const seen: number[][] = [[], []];
      await Promise.all(
        readers.map(
          (r, i) =>
            r.subscribe("deal.*", (e) => void seen[i]?.push((e.data as { n: number }).n), { from: "start" }).ready,
        ),
      );
      const all = Array.from({ length: EVENTS }, (_, n) => n);
      for (const s of seen) await eventually(() => expect(s).toEqual(all), { timeoutMs: 30_000 });
      // The window as a stock Yjs client syncs it (as it is), against what reached each reader.
      const ydoc = new Y.Doc();
      const provider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, ydoc, {
        params: { doc: "log/main", token: await room.token("tail", "yjs", { team }) },
        WebSocketPolyfill: WebSocket as never,
        disableBc: true,
      });
      try {
        await eventually(() => expect(provider.synced).toBe(true), { timeoutMs: 30_000 });
        const snapshot = Y.encodeStateAsUpdate(ydoc).byteLength;
        expect(snapshot).toBeGreaterThan(DEFLATE_MIN_BYTES);
        for (const c of counters) expect(c.bytesReceived).toBeLessThan(snapshot / 3);
      } finally {
        provider.destroy();
      }

      await writer.publish("deal.updated", { n: EVENTS, note: "live" });
      for (const s of seen) await eventually(() => expect(s).toEqual([...all, EVENTS]));
    } finally {
      await Promise.all(readers.map((r) => r.close()));
      await writer.close();
    }
  }, 120_000);
});
