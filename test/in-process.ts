/**
 * A team room in this process, for fast tests of what the room decides: `TeamRoom` over the
 * in-memory storage (`party/memory-storage.ts`), reached either by bare sockets that send
 * raw frames (`room.socket(...)`: what a hostile or hand-written client can do) or by real
 * clients (`room.agent(...)`: `connect()` from `client/`, whose partysocket talks to the room
 * through the test kit's in-memory WebSocket, `testing/memory-socket.ts`). Each socket is
 * admitted with the `Identity` the edge would verify from a token (agent, role, scope),
 * exactly as the deployed room receives it.
 *
 * The network is asynchronous here too (every frame is delivered on a later macrotask), and a
 * test may hold back a real client's incoming frames (`pause`/`resume`) to make a race
 * happen on purpose.
 */
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { type ConnectOptions, connect, type Team } from "../client/index.ts";
import { MemoryKv } from "../party/memory-storage.ts";
import { TeamRoom } from "../party/room.ts";
import type { Socket } from "../party/session.ts";
import {
  type DocName,
  decodeDocFrame,
  encodeDocFrame,
  type Identity,
  type PolicyInput,
  parseRoomFrame,
  type RoomFrame,
} from "../protocol/index.ts";
import { memoryWebSocketClass } from "../testing/memory-socket.ts";

const tick = () => new Promise((r) => setTimeout(r, 0));

/** A bare socket: what the room sent it, and a way to send anything. */
export type RawSocket = {
  readonly frames: RoomFrame[];
  /** Binary frames, decoded to their document name (y-protocols message kept). */
  readonly binary: { doc: string; bytes: Uint8Array }[];
  readonly closed: { code?: number; reason?: string } | null;
  send(frame: Record<string, unknown>): void;
  /** Opens a document (sync step 1) the way the client does. */
  open(doc: DocName): void;
  /** Sends a Yjs update for `doc` that writes `value` under `key` in the fields map. */
  write(doc: DocName, key: string, value: unknown): void;
  /** Sends a frame and waits until the room has handled it (and anything it answers later). */
  ask(frame: Record<string, unknown>): Promise<RoomFrame | undefined>;
  settle(): Promise<void>;
  /** Everything the room sent, as text: for "no content leaked" checks. */
  text(): string;
};

export type InProcessRoom = {
  readonly room: TeamRoom;
  readonly storage: MemoryKv;
  /** A bare socket admitted as `identity` (agent, role, token scope). */
  socket(identity: Identity, query?: string): Promise<RawSocket>;
  /** A real client admitted as `identity`. */
  agent(identity: Identity, options?: Partial<ConnectOptions>): Promise<Team & Controls>;
  /** Replaces the stored policy directly (as an admin would, without one). */
  setPolicy(policy: PolicyInput): Promise<void>;
  close(): Promise<void>;
};

/** Control over a real client's link: hold the room's frames to it back, then deliver them. */
export type Controls = { pause(): void; resume(): void };

export async function inProcessRoom(options: { policy?: PolicyInput; team?: string } = {}): Promise<InProcessRoom> {
  const storage = new MemoryKv();
  const room = new TeamRoom({ team: options.team ?? "acme", storage });
  await room.start();
  const teams: Team[] = [];
  const admin = { agent: "_policy", role: "admin" } as const;
  const setPolicy = async (policy: PolicyInput) => {
    const out = await room.policy.set(policy, admin.agent);
    if (out && "error" in out) throw new Error(out.error.message);
  };
  if (options.policy) await setPolicy(options.policy);

  const socket = async (identity: Identity, query = ""): Promise<RawSocket> => {
    const frames: RoomFrame[] = [];
    const binary: { doc: string; bytes: Uint8Array }[] = [];
    const texts: string[] = [];
    let closed: { code?: number; reason?: string } | null = null;
    const server: Socket = {
      send: (data) => {
        if (typeof data === "string") {
          texts.push(data);
          const parsed = parseRoomFrame(data);
          if (!parsed.ok) throw new Error(`the room sent an invalid frame: ${parsed.error.message}`);
          frames.push(parsed.frame);
          return;
        }
        const bytes = new Uint8Array(
          data instanceof ArrayBuffer ? data : data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
        );
        const decoded = decodeDocFrame(bytes);
        if (decoded.ok) binary.push({ doc: decoded.frame.doc, bytes });
        texts.push(new TextDecoder().decode(bytes));
      },
      close: (code, reason) => {
        closed = { code, reason };
      },
    };
    room.connect(server, new URL(`http://room/parties/main/acme?agent=${identity.agent}${query}`), identity);
    const settle = async () => {
      for (let i = 0; i < 5; i++) await tick();
    };
    const raw: RawSocket = {
      frames,
      binary,
      get closed() {
        return closed;
      },
      send: (frame) => room.message(server, JSON.stringify(frame)),
      open: (doc) =>
        room.message(
          server,
          encodeDocFrame(doc, (e) => syncProtocol.writeSyncStep1(e, new Y.Doc())),
        ),
      write: (doc, key, value) => {
        const local = new Y.Doc();
        local.getMap("fields").set(key, value);
        const update = Y.encodeStateAsUpdate(local);
        room.message(
          server,
          encodeDocFrame(doc, (e) => syncProtocol.writeUpdate(e, update)),
        );
      },
      ask: async (frame) => {
        const before = frames.length;
        raw.send(frame);
        await settle();
        return frames.slice(before).find((f) => "ref" in f && f.ref === frame.ref);
      },
      settle,
      text: () => texts.join("\n"),
    };
    await settle();
    return raw;
  };

  const agent = async (identity: Identity, opts: Partial<ConnectOptions> = {}): Promise<Team & Controls> => {
    let paused = false;
    let held: (() => void)[] = [];
    const controls: Controls = {
      pause: () => {
        paused = true;
      },
      resume: () => {
        paused = false;
        for (const deliver of held.splice(0)) deliver();
      },
    };
    held = [];
    // The kit's in-memory sockets, admitted as `identity` (what the edge would hand the room).
    const WebSocket = memoryWebSocketClass({
      dial: () => ({
        connect: (end, url) => room.connect(end, url, identity),
        message: (end, data) => room.message(end, data),
        close: (end) => room.close(end),
      }),
      incoming: (deliver) => {
        if (paused) held.push(deliver);
        else deliver();
      },
    });
    const team = await connect({
      host: "in-process",
      team: "acme",
      agent: identity.agent,
      role: identity.role,
      WebSocket,
      connectTimeoutMs: 5_000,
      ...opts,
    });
    teams.push(team);
    return Object.assign(team, controls);
  };

  return {
    room,
    storage,
    socket,
    agent,
    setPolicy,
    close: async () => {
      await Promise.all(teams.map((t) => t.close()));
    },
  };
}
