/**
 * A raw socket for hostile-client tests: sends whatever bytes a test makes, records the
 * room's frames, and resolves `closed` with the close code. Works over both test rooms
 * (`room.WebSocket`). Test helper; not part of the kit.
 */
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { encodeDocFrame, parseRoomFrame, type RoomFrame } from "../protocol/index.ts";
import type { TestHost } from "./harness.ts";

export type Raw = {
  send(data: string | Uint8Array): void;
  frames: RoomFrame[];
  binary: Uint8Array[];
  readonly open: boolean;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
};

export async function rawSocket(room: TestHost, url: string): Promise<Raw> {
  const ws = new room.WebSocket(url);
  ws.binaryType = "arraybuffer";
  const frames: RoomFrame[] = [];
  const binary: Uint8Array[] = [];
  let open = true;
  ws.addEventListener("message", (e: { data: unknown }) => {
    if (typeof e.data === "string") {
      const parsed = parseRoomFrame(e.data);
      if (!parsed.ok) throw new Error(`room sent an invalid frame: ${e.data}`);
      frames.push(parsed.frame);
    } else binary.push(new Uint8Array(e.data as ArrayBuffer));
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.addEventListener("close", (e: { code: number; reason: string }) => {
      open = false;
      resolve({ code: e.code, reason: e.reason });
    }),
  );
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", (e: unknown) => reject(e), { once: true });
  });
  return {
    send: (data) => {
      if (open) ws.send(data);
    },
    frames,
    binary,
    get open() {
      return open;
    },
    closed,
    close: () => ws.close(),
  };
}

/** A sync step 1 for `doc` from an empty document: opens it on the connection. */
export const openDoc = (doc: `state/${string}` | `log/${string}`): Uint8Array =>
  encodeDocFrame(doc, (e) => syncProtocol.writeSyncStep1(e, new Y.Doc()));

/** An update message for `doc` carrying `update` as is. */
export const updateFrame = (doc: `state/${string}` | `log/${string}`, update: Uint8Array): Uint8Array =>
  encodeDocFrame(doc, (e) => syncProtocol.writeUpdate(e, update));
