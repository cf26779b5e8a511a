/**
 * The room in process: every team's `TeamRoom` (the same object PartyKit hosts) over an
 * in-memory Durable-Object-like store, reached through in-memory WebSockets. The library's
 * `connect` works against it unchanged, in milliseconds, with no workerd. For tests of
 * agents and of the room's logic; what is about the real server (PartyKit's HTTP, workerd,
 * SIGKILL) stays with `startRoom`.
 *
 *   await using room = createTestRoom();
 *   const a = await room.agent("sales-1", { team: "acme" });
 */
import { MemoryKv } from "../party/memory-storage.ts";
import { TeamRoom } from "../party/room.ts";
import type { KvStorage } from "../party/storage.ts";
import { type CuttableSocket, Faults } from "./cuttable.ts";
import { TestKitError } from "./errors.ts";
import { agentPool, checkPath, type TestHost, uniqueTeam } from "./host.ts";
import {
  type MemoryNetwork,
  type MemoryRoomHandler,
  type MemoryWebSocket,
  type MemoryWebSocketClass,
  memoryWebSocketClass,
  type RoomEnd,
} from "./memory-socket.ts";

type RoomOptions = ConstructorParameters<typeof TeamRoom>[0];

export type TestRoomOptions = {
  /** Stream tuning for every team's room, e.g. `{ window: 1024 }` (what `--var CROSSTALK_LOG_WINDOW` sets on the real one). */
  streams?: RoomOptions["streams"];
  /** Call and message tuning. */
  rpc?: RoomOptions["rpc"];
  /** The rooms' clock. */
  now?: () => number;
  /** Per-connection limits, e.g. `{ maxOpenDocs: 4 }` (what `--var CROSSTALK_MAX_OPEN_DOCS` sets on the real one). */
  limits?: RoomOptions["limits"];
  /** Retention pass interval (what `--var CROSSTALK_RETENTION_INTERVAL_MS` sets on the real one). */
  retention?: RoomOptions["retention"];
  /** How the audit stream aggregates. */
  audit?: RoomOptions["audit"];
  /** How long a document nobody syncs stays loaded (what `--var CROSSTALK_DOC_IDLE_MS` sets on the real one). */
  docIdleMs?: RoomOptions["docIdleMs"];
  /** Whether and when state documents are rebased (what `--var CROSSTALK_REBASE` sets on the real one). */
  rebase?: RoomOptions["rebase"];
};

export interface TestRoom extends TestHost {
  /** A made-up host (`test-room-<n>.invalid`): only this room's `WebSocket` reaches it. */
  readonly host: string;
  /** The WebSocket class whose sockets reach this room; `agent()` passes it for you. */
  readonly WebSocket: MemoryWebSocketClass;
  /** A breakable network for one agent, over this room's in-memory sockets. */
  cuttableSocket(): CuttableSocket<MemoryWebSocketClass>;
  /** A team's storage (created empty on first use), to inspect what the room wrote or to pre-fill it. */
  storage(team: string): MemoryKv;
  /**
   * Crashes every team's room: each socket drops (1006 on the client, no close handshake),
   * the rooms' memory is gone, storage keeps what was written. New connections fail until
   * `restart()`; a write the dead room had not finished never lands.
   */
  kill(): Promise<void>;
  /** Fresh `TeamRoom`s over the same storage, built as agents reconnect (after a `kill()` if the room was up). */
  restart(): Promise<void>;
}

/** Storage that a crashed room can no longer reach: every later call never settles, like a dead process. */
function fenced(kv: KvStorage): { storage: KvStorage; cut(): void } {
  let dead = false;
  const never = new Promise<never>(() => {});
  const guard =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      dead ? never : fn(...args);
  return {
    storage: {
      get: guard((key) => kv.get(key)),
      list: guard((options) => kv.list(options)),
      put: guard((entries) => kv.put(entries)),
      delete: guard((keys) => kv.delete(keys)),
    } as KvStorage,
    cut: () => {
      dead = true;
    },
  };
}

/** One team's Durable Object: its storage for good, its room while it runs. */
type TeamSlot = {
  kv: MemoryKv;
  room: TeamRoom | null;
  started: Promise<void>;
  cut: () => void;
  handler: MemoryRoomHandler | null;
};

/**
 * Who an HTTP request is. The in-process room stands for a trusted edge (no tokens, as its
 * sockets are admitted as their URL names them): `?agent=&role=`, else the team's operator
 * (`admin`). The real edge (`party/server.ts`, `startRoom`) takes both from a verified token.
 */
function principalOf(url: URL): { agent: string; role: string } {
  const q = url.searchParams;
  return { agent: q.get("agent") ?? "http", role: q.get("role") ?? "admin" };
}

const macrotask = () => new Promise<void>((r) => setImmediate(r));

let roomCounter = 0;

/** Creates an in-process room. Node-only; nothing listens on a port. */
export function createTestRoom(options: TestRoomOptions = {}): TestRoom {
  const host = `test-room-${++roomCounter}.invalid`;
  const teams = new Map<string, TeamSlot>();
  const ends = new Set<RoomEnd>();
  let up = true;
  let disposed = false;

  const teamOf = (name: string): TeamSlot => {
    let team = teams.get(name);
    if (!team) {
      team = { kv: new MemoryKv(), room: null, started: Promise.resolve(), cut: () => {}, handler: null };
      teams.set(name, team);
    }
    return team;
  };

  /** A team's live room, built on first use after a start or a crash (PartyKit does the same). */
  const live = (name: string): { room: TeamRoom; started: Promise<void>; handler: MemoryRoomHandler } => {
    const team = teamOf(name);
    if (!team.room || !team.handler) {
      const view = fenced(team.kv);
      const room = new TeamRoom({ ...options, team: name, storage: view.storage });
      // PartyKit admits nothing before `onStart` resolves; callbacks queue behind it, in order.
      const started = room.start();
      team.room = room;
      team.started = started;
      team.cut = view.cut;
      team.handler = {
        connect: (end, url) => {
          ends.add(end);
          void started.then(() => room.connect(end, url));
        },
        message: (end, data) => void started.then(() => room.message(end, data)),
        close: (end) => {
          ends.delete(end);
          void started.then(() => room.close(end));
        },
      };
    }
    return { room: team.room, started: team.started, handler: team.handler };
  };

  /** `/parties/main/<team>[/...]` → the team, or null for any other path. */
  const teamIn = (pathname: string): string | null => {
    const [parties, party, team] = pathname.split("/").filter(Boolean);
    if (parties !== "parties" || party !== "main" || !team) return null;
    try {
      return decodeURIComponent(team);
    } catch {
      return null;
    }
  };

  const network = (taps: Partial<MemoryNetwork> = {}): MemoryNetwork => ({
    ...taps,
    dial(url) {
      if (!up || disposed || url.host !== host) return null;
      const team = teamIn(url.pathname);
      return team === null ? null : live(team).handler;
    },
  });
  const WebSocket = memoryWebSocketClass(network());
  const pool = agentPool(() => ({ host, WebSocket }));

  const kill = async () => {
    if (!up) return;
    up = false;
    for (const end of ends) end.sever(false);
    ends.clear();
    for (const team of teams.values()) {
      team.cut();
      team.room = null;
      team.handler = null;
    }
    // Let the clients see their sockets drop before the caller goes on.
    await macrotask();
  };

  return {
    host,
    WebSocket,
    team: uniqueTeam,
    agent: pool.agent,
    async fetch(path, init) {
      const url = new URL(`http://${host}${checkPath(path)}`);
      if (!up || disposed) throw new TypeError("fetch failed", { cause: new Error(`${host} is down`) });
      // A request crosses the network like a frame does: it reaches the room on a later
      // macrotask, after what sockets sent before it, and its answer comes back on another.
      await macrotask();
      const team = teamIn(url.pathname);
      let response = new Response("Not found", { status: 404 });
      if (team !== null) {
        const { room, started } = live(team);
        await started;
        response = await room.request(new Request(url, init), principalOf(url));
      }
      await macrotask();
      return response;
    },
    cuttableSocket() {
      const faults = new Faults<MemoryWebSocket>((socket) => socket.sever());
      const base = network({
        created: (socket) => {
          faults.current = socket;
        },
        opened: () => {
          faults.openedAt = performance.now();
        },
        outgoing: (data) => faults.fate(data),
        sent: (n) => {
          faults.bytesSent += n;
        },
        received: (n) => {
          faults.bytesReceived += n;
        },
      });
      return faults.controls(memoryWebSocketClass({ ...base, dial: (url) => (faults.isDown ? null : base.dial(url)) }));
    },
    storage: (team) => {
      if (typeof team !== "string" || team.length === 0) {
        throw new TestKitError("INVALID_ARGUMENT", `storage(team): a team name, got ${JSON.stringify(team)}`);
      }
      return teamOf(team).kv;
    },
    kill,
    async restart() {
      await kill();
      up = true;
    },
    async [Symbol.asyncDispose]() {
      await pool.closeAll();
      await kill();
      disposed = true;
    },
  };
}
