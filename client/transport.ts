/**
 * The agent's one socket to its team room: partysocket underneath (reconnects, query provider
 * re-evaluated on each attempt), our own reconnect backoff and heartbeat, frame parsing and
 * chunk reassembly on top. Not re-exported from the package entry point; `team.ts` owns it.
 */

import type * as decoding from "lib0/decoding";
import { ObservableV2 } from "lib0/observable";
import { PartySocket } from "partysocket";
import {
  backoff,
  batchOf,
  CLOSE_CODES,
  type ClientFrame,
  CrosstalkError,
  chunkBinary,
  createReassembler,
  type DocName,
  decodeDocFrame,
  endOfTick,
  FATAL_CLOSE_CODES,
  isBatch,
  MAX_BATCH_CHARS,
  MAX_FRAME_BYTES,
  type Parsed,
  PING_FRAME,
  PONG_FRAME,
  PROTOCOL_VERSION,
  parseRoomBatch,
  parseRoomFrame,
  type RoomFrame,
  readFrame,
} from "../protocol/index.ts";
import { inflateFrame } from "./inflate.ts";

export type Status = "connecting" | "online" | "offline" | "closed";

/**
 * How long a connection attempt may wait for its socket to open: 5 s, doubled for each
 * attempt that failed in a row, up to 20 s. A fixed 5 s turned a join storm into a stall:
 * a room admitting a thousand agents at once (or the dev server's one process) takes longer
 * than that to answer the last of them, so they gave up, came back, and the room spent its
 * time on handshakes nobody waited for. A dead link is still found in 5 s on the first try.
 */
export const handshakeTimeoutMs = (failedInARow: number): number => Math.min(20_000, 5000 * 2 ** failedInARow);

export type TransportOptions = {
  /** `host[:port]` of the PartyKit server, e.g. `127.0.0.1:1999` or `acme.user.partykit.dev`. */
  host: string;
  team: string;
  agent: string;
  role: string;
  /** The PartyKit party that hosts team rooms. */
  party?: string;
  /** Defaults to `ws` for loopback hosts and `wss` elsewhere (partysocket's rule). */
  protocol?: "ws" | "wss";
  /** A WebSocket constructor where the runtime has none (Node 20: `crosstalk/node` passes `ws`). */
  WebSocket?: unknown;
  /**
   * The agent's signed token (sent as `?token=`), or a function asked for one on every
   * (re)connect. After the room closes with 4001 (token expired) the client reconnects and
   * asks again, so a function should return a fresh token (fetch it, mint it).
   */
  token?: string | (() => string | Promise<string>);
  /** Extra query parameters, re-evaluated on every (re)connect (a `token` here works too). */
  query?: () => Record<string, string> | Promise<Record<string, string>>;
  /**
   * This client instance's id (the socket's `_pk`): the room lets the same instance replace
   * its own older socket, and numbers a durable outbox per instance. Default: a fresh one
   * (with `connect({ persist })`, the one kept in the storage).
   */
  instance?: string;
  /**
   * Reconnect backoff in ms. After a socket the room admitted drops, the first attempt waits
   * a random delay below `minReconnectDelayMs` (default 100); each failed attempt doubles that
   * bound up to `maxReconnectDelayMs` (default 5000), always drawn at random below it (full
   * jitter), so a crowd of agents that lost their room does not retry in step.
   */
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /**
   * Heartbeat: after this long with nothing received (default 25 000 ms) the client sends a
   * `ping`; if nothing at all arrives within `heartbeatTimeoutMs` (default 10 000) it takes
   * the link for dead (bytes silently dropped, TCP still up) and reconnects. A blackholed
   * link is thus found within interval + timeout. 0 turns the heartbeat off. The default stays
   * above a hibernating room's ~10 s idle point: under `partykit dev`/PartyKit each ping wakes
   * the room (PartyKit exposes no WebSocket auto-response); the partyserver host answers pings
   * without waking it.
   */
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
};

type Events = {
  status: (status: Status) => void;
  doc: (doc: DocName, decoder: decoding.Decoder) => void;
  /** The room refused this agent for good (bad parameters, identity in use, unauthorized). */
  fatal: (error: CrosstalkError) => void;
  /** A frame from the room could not be read; the connection carries on. */
  protocolError: (error: CrosstalkError) => void;
  /**
   * An attempt failed before any socket opened, because nothing listens at the host or the
   * name does not resolve (Node's `ws` says why; browsers do not, so they never emit this).
   */
  unreachable: (error: CrosstalkError) => void;
};

/** Socket errors that mean no room is there to answer, as opposed to a slow or dropped link. */
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH"]);

const fatalError = (code: number, reason: string): CrosstalkError => {
  const text = reason || `closed with ${code}`;
  if (code === CLOSE_CODES.Unauthorized.code) return new CrosstalkError("UNAUTHORIZED", text);
  if (code === CLOSE_CODES.Forbidden.code) return new CrosstalkError("FORBIDDEN", text);
  if (code === CLOSE_CODES.AgentIdInUse.code || code === CLOSE_CODES.TakenOver.code)
    return new CrosstalkError("CONFLICT", text);
  if (code === CLOSE_CODES.BadUpdate.code || code === CLOSE_CODES.TooManyErrors.code)
    return new CrosstalkError("BAD_FRAME", text);
  return new CrosstalkError("INVALID_ARGUMENT", text);
};

export class Transport extends ObservableV2<Events> {
  status: Status = "connecting";
  /** Why the room refused this agent for good, once it has. */
  refusal: CrosstalkError | null = null;
  readonly #socket: PartySocket;
  #reassembler = createReassembler();
  /** Connection attempts since the room last admitted us; sets the next attempt's delay. */
  #attempts = 0;
  readonly #backoff: { baseMs: number; capMs: number };
  /** The wait before the next attempt, cut short by `close()`. */
  #waiting: { timer: ReturnType<typeof setTimeout>; done: () => void } | null = null;
  readonly #heartbeat: { intervalMs: number; timeoutMs: number };
  #heartbeatTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the last message of any kind arrived (ms), and when an unanswered ping left (null: none). */
  #heardAt = 0;
  #pingAt: number | null = null;
  /**
   * Flow control (`read` frames): what this socket received since it last told the room, and
   * how much to let pass between two reports (an eighth of the `unreadBudget` the welcome
   * gave; 0: the room keeps no budget, so nothing is reported).
   */
  #unreported = 0;
  #reportEvery = 0;
  /** Abandons a connection attempt whose socket did not open in time ({@link handshakeTimeoutMs}). */
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: TransportOptions) {
    super();
    // `flow=1`: this client reports what it reads, so the room may hold it to an unread budget.
    // `batch=1`: this client reads batches (`parseRoomBatch`).
    const identity = {
      agent: options.agent,
      role: options.role,
      v: String(PROTOCOL_VERSION),
      flow: "1",
      batch: "1",
    };
    const { token, query } = options;
    this.#backoff = { baseMs: options.minReconnectDelayMs ?? 100, capMs: options.maxReconnectDelayMs ?? 5000 };
    this.#heartbeat = {
      intervalMs: options.heartbeatIntervalMs ?? 25_000,
      timeoutMs: options.heartbeatTimeoutMs ?? 10_000,
    };
    this.#socket = new PartySocket({
      host: options.host,
      room: options.team,
      party: options.party ?? "main",
      protocol: options.protocol,
      WebSocket: options.WebSocket,
      ...(options.instance ? { id: options.instance } : {}),
      // Nothing is buffered while the socket is closed: `send` refuses offline, and what must
      // go later sits in an outbox that resends it (a second buffer would send duplicates).
      maxEnqueuedMessages: 0,
      // partysocket asks for the query before every attempt, after its own delay (zero here):
      // the place our backoff waits.
      query: async () => {
        const failedInARow = await this.#beforeAttempt();
        const params = {
          ...(await query?.()),
          ...(token !== undefined ? { token: typeof token === "string" ? token : await token() } : {}),
          ...identity,
        };
        // From here the socket opens: a slow token provider does not count against it.
        this.#armHandshake(failedInARow);
        return params;
      },
      // partysocket's own backoff is off: it has no jitter, and it resets only after 5 s of
      // uptime, so an agent whose link drops every few seconds waited ever longer although
      // every reconnect succeeded at once. Ours (`#beforeAttempt`) resets on `welcome`.
      minReconnectionDelay: 0,
      maxReconnectionDelay: 0,
      // Ours (`#armHandshake`) grows with failed attempts; partysocket's reads a fixed
      // option before our backoff runs, so it only stands behind ours.
      connectionTimeout: 60_000,
      // A refusal for good (4401, 4403, 4409, taken over) ends the socket: no new attempt, so
      // the token provider is not asked again either. 4001 (expired) reconnects with backoff.
      shouldReconnectOnClose: (e: CloseEvent) => !FATAL_CLOSE_CODES.has(e.code),
    });
    this.#socket.binaryType = "arraybuffer";
    this.#socket.addEventListener("error", (e: Event) => {
      const code = (e as { error?: { code?: unknown } }).error?.code;
      if (this.status !== "connecting" || typeof code !== "string" || !UNREACHABLE.has(code)) return;
      this.emit("unreachable", [new CrosstalkError("OFFLINE", `cannot reach ${options.host}: ${code}`)]);
    });
    this.#socket.addEventListener("open", () => clearTimeout(this.#handshakeTimer));
    this.#socket.addEventListener("message", (e: MessageEvent) => this.#receive(e.data));
    this.#socket.addEventListener("close", (e: CloseEvent) => {
      clearTimeout(this.#handshakeTimer);
      this.#reassembler = createReassembler();
      // The next connection may reach an older room: it says again what it reads.
      this.#batches = false;
      this.#batch = [];
      this.#batchChars = 0;
      if (this.status === "closed") return;
      if (FATAL_CLOSE_CODES.has(e.code)) {
        this.refusal = fatalError(e.code, e.reason);
        this.#socket.close();
        this.#setStatus("closed");
        this.emit("fatal", [this.refusal]);
        return;
      }
      if (this.status === "online") this.#setStatus("offline");
    });
  }

  /**
   * Waits before a connection attempt: none for the first, then jittered and growing.
   * Resolves with how many attempts failed in a row before this one.
   */
  async #beforeAttempt(): Promise<number> {
    const attempt = this.#attempts++;
    if (attempt === 0 || this.status === "closed") return 0;
    const ms = backoff(attempt - 1, this.#backoff);
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#waiting = null;
        resolve();
      };
      this.#waiting = { timer: setTimeout(done, ms), done };
    });
    return attempt - 1;
  }

  /** Starts the clock on the attempt about to open a socket; on expiry it is dropped for the next. */
  #armHandshake(failedInARow: number): void {
    clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = setTimeout(() => {
      if (this.status === "closed" || this.#socket.readyState !== PartySocket.CONNECTING) return;
      this.#socket.reconnect(1000, "handshake timeout");
    }, handshakeTimeoutMs(failedInARow));
  }

  /** The client instance id; the room lets the same instance replace its own older socket. */
  get instance(): string {
    return this.#socket.id;
  }

  get online(): boolean {
    return this.status === "online";
  }

  /**
   * Why nothing more can be sent, once the connection is closed for good (closed by the agent,
   * or refused by the room); null while it may still (re)connect. Operations started after
   * that fail at once with it instead of waiting for a connection that will never come.
   */
  get closedError(): CrosstalkError | null {
    if (this.status !== "closed") return null;
    return this.refusal ?? new CrosstalkError("CLOSED", "the team connection is closed");
  }

  /**
   * Where every control frame from the room goes, in order (set by the owner, `team.ts`): a
   * plain callback, not an emitted event, since an emit copies its listeners and arguments
   * for each of the frames a call takes.
   */
  onFrame: (frame: RoomFrame) => void = () => {};

  /**
   * Runs before every frame goes out (set by the owner of coalesced writes, `docs.ts`): what it
   * holds back goes first, so frames still leave in the order they were made.
   */
  beforeSend: (() => void) | null = null;

  /**
   * Whether this connection's room reads batches (its welcome said `batches: true`): then the
   * control frames of one tick leave as one message (`batchOf`), in order, at the end of the
   * tick, instead of one socket write and one room event each.
   */
  #batches = false;
  /** Frames (as text) waiting for the end of this tick, and their length together. */
  #batch: string[] = [];
  #batchChars = 0;

  /** Sends a control frame if online; returns false (and sends nothing) otherwise. */
  send(frame: ClientFrame): boolean {
    if (!this.online) return false;
    this.beforeSend?.();
    const text = JSON.stringify(frame);
    if (!this.#batches) {
      this.#socket.send(text);
      return true;
    }
    if (this.#batchChars + text.length > MAX_BATCH_CHARS) this.#flush();
    this.#batch.push(text);
    this.#batchChars += text.length;
    if (this.#batch.length === 1) void endOfTick.then(this.#flush);
    return true;
  }

  /** Sends what waits for the end of the tick: one frame as itself, several as a batch. */
  readonly #flush = (): void => {
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
    this.#batchChars = 0;
    this.#socket.send(batch.length === 1 ? (batch[0] as string) : batchOf(batch));
  };

  sendBinary(bytes: Uint8Array): boolean {
    if (!this.online) return false;
    this.beforeSend?.();
    // Frames sent before this one leave before it.
    this.#flush();
    // lib0 encoders always produce plain ArrayBuffer-backed arrays.
    if (bytes.byteLength <= MAX_FRAME_BYTES) this.#socket.send(bytes as Uint8Array<ArrayBuffer>);
    else for (const part of chunkBinary(bytes)) this.#socket.send(part as Uint8Array<ArrayBuffer>);
    return true;
  }

  /**
   * The room admitted us: the next drop reconnects after the shortest delay (a random one
   * below `minReconnectDelayMs`, so agents dropped together do not all return in the same
   * millisecond). Failed attempts escalate from there.
   */
  #resetBackoff(): void {
    this.#attempts = 1;
  }

  /**
   * One timer per connection. A ping leaves only after `intervalMs` of silence (a busy link
   * proves itself with its own traffic); the link is dead when nothing at all, pong or
   * otherwise, arrived within `timeoutMs` of it. Comparing arrival times rather than counting
   * ticks keeps a throttled timer (a background tab) from calling a live link dead.
   */
  #heartbeatTick = (): void => {
    const { intervalMs, timeoutMs } = this.#heartbeat;
    if (this.status !== "online" || intervalMs <= 0) return;
    const now = Date.now();
    if (this.#pingAt !== null && this.#heardAt < this.#pingAt) {
      const left = this.#pingAt + timeoutMs - now;
      if (left > 0) return this.#armHeartbeat(left);
      this.#pingAt = null;
      // Not a close the room will ever see: this socket's bytes go nowhere. partysocket drops
      // it, reports the close (status → offline) and connects again through our backoff.
      const { code, reason } = CLOSE_CODES.NoHeartbeat;
      this.#socket.reconnect(code, reason);
      return;
    }
    this.#pingAt = null;
    const quiet = now - this.#heardAt;
    if (quiet < intervalMs) return this.#armHeartbeat(intervalMs - quiet);
    this.#pingAt = now;
    this.#socket.send(PING_FRAME);
    this.#armHeartbeat(timeoutMs);
  };

  #armHeartbeat(ms: number): void {
    clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = setTimeout(this.#heartbeatTick, ms);
  }

  close(): void {
    this.#flush();
    this.#setStatus("closed");
    clearTimeout(this.#heartbeatTimer);
    clearTimeout(this.#handshakeTimer);
    if (this.#waiting) {
      clearTimeout(this.#waiting.timer);
      this.#waiting.done();
    }
    this.#socket.close(1000, "client closed");
  }

  #setStatus(status: Status): void {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", [status]);
  }

  /**
   * Counts what arrived, in the units the room counts (`Session.unread`), and reports it once
   * enough has: before the frame is handled, so the time spent handling it is not taken for
   * a slow read.
   */
  #count(units: number): void {
    this.#unreported += units;
    if (this.#reportEvery === 0 || this.#unreported < this.#reportEvery) return;
    this.#socket.send(readFrame(this.#unreported));
    this.#unreported = 0;
  }

  /** One frame from the room (alone, or one of a batch of `chars` in all). */
  #frame(parsed: Parsed<RoomFrame>, chars: number): void {
    if (!parsed.ok) return this.emit("protocolError", [CrosstalkError.from(parsed.error)]);
    if (parsed.frame.type === "pong") return;
    // `welcome` is what makes a socket usable: the room has admitted this agent.
    if (parsed.frame.type === "welcome") {
      // The first message of the socket: the room's count starts here too.
      const budget = parsed.frame.unreadBudget;
      this.#reportEvery = budget === undefined ? 0 : Math.max(1, Math.floor(budget / 8));
      this.#unreported = chars;
      this.#batches = parsed.frame.batches === true;
      this.#resetBackoff();
      this.#pingAt = null;
      if (this.#heartbeat.intervalMs > 0) this.#armHeartbeat(this.#heartbeat.intervalMs);
      this.status = "online";
      this.onFrame(parsed.frame);
      this.emit("status", ["online"]);
      return;
    }
    this.onFrame(parsed.frame);
  }

  #receive(data: unknown): void {
    if (this.status === "closed") return;
    this.#heardAt = Date.now();
    if (typeof data === "string") {
      this.#count(data.length);
      if (data === PONG_FRAME) return;
      if (!isBatch(data)) return this.#frame(parseRoomFrame(data), data.length);
      for (const parsed of parseRoomBatch(data)) this.#frame(parsed, data.length);
      return;
    }
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array);
    this.#count(bytes.byteLength);
    const whole = this.#reassembler.push(bytes);
    if (!whole.ok) return this.emit("protocolError", [CrosstalkError.from(whole.error)]);
    if (!whole.frame) return;
    const inflated = inflateFrame(whole.frame);
    if (!inflated.ok) return this.emit("protocolError", [CrosstalkError.from(inflated.error)]);
    const decoded = decodeDocFrame(inflated.frame);
    if (!decoded.ok) return this.emit("protocolError", [CrosstalkError.from(decoded.error)]);
    this.emit("doc", [decoded.frame.doc, decoded.frame.decoder]);
  }
}
