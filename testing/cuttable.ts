/**
 * A WebSocket class whose sockets a test can break, for the real `partykit dev` room: a `ws`
 * subclass to pass as `connect({ WebSocket })` (or as y-websocket's `WebSocketPolyfill`).
 * The in-process room hands out the same interface over its in-memory sockets
 * (`TestRoom.cuttableSocket()`), so a fault test reads the same against either room.
 */
import WebSocket from "ws";

/** What a client hands to `WebSocket.send`. */
export type OutgoingData = string | ArrayBuffer | ArrayBufferView | Blob;

/** A breakable network for one agent (or one stock client): the sockets of one class. */
export interface CuttableSocket<W = unknown> {
  /** The class to pass as `connect({ WebSocket })`; every socket it opens is tracked here. */
  readonly WebSocket: W;
  /** Kills the current socket without a close handshake (the room sees it vanish); partysocket reconnects by itself. */
  cut(): void;
  /** `cut()`, and every later connection fails at once until `up()`: a crashed or partitioned agent. */
  down(): void;
  /** Heals `down()`: the next reconnect attempt gets through. */
  up(): void;
  /**
   * Silently drops outgoing frames (client to room) for which `predicate` returns true, while
   * the socket stays up: a lost request, a lost ack. `null` stops dropping.
   */
  dropOutgoing(predicate: ((data: OutgoingData) => boolean) | null): void;
  /**
   * Loses the next outgoing text frame that `match`es and kills the socket with it: a frame
   * written just before the link died, which the room never got. Fires once.
   */
  cutOnSend(match: (text: string) => boolean): void;
  /** Payload bytes sent by every socket of this class so far (dropped frames not counted). */
  readonly bytesSent: number;
  /** Payload bytes received so far. */
  readonly bytesReceived: number;
  /** When the latest socket opened (`performance.now()`), 0 before the first. */
  readonly openedAt: number;
}

/** The byte length of a frame's payload. */
export function payloadBytes(data: OutgoingData | Buffer[]): number {
  if (typeof data === "string") return Buffer.byteLength(data);
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.byteLength, 0);
  if (data instanceof Blob) return data.size;
  return data.byteLength;
}

/**
 * The faults of one cuttable class and their counters; both variants (`ws` here, in-memory in
 * the test room) keep them the same way and differ only in how a socket is killed. Not
 * re-exported from `crosstalk/testing`: users get the `CuttableSocket` it builds.
 */
export class Faults<S> {
  /** The latest socket of the class: the one `cut()` kills. */
  current: S | null = null;
  isDown = false;
  drop: ((data: OutgoingData) => boolean) | null = null;
  lose: ((text: string) => boolean) | null = null;
  bytesSent = 0;
  bytesReceived = 0;
  openedAt = 0;

  constructor(private readonly kill: (socket: S) => void) {}

  /** What happens to an outgoing frame: it leaves, it is lost, or it is lost and the link dies with it. */
  fate(data: OutgoingData): "send" | "drop" | "sever" {
    if (this.lose && typeof data === "string" && this.lose(data)) {
      this.lose = null;
      return "sever";
    }
    return this.drop?.(data) ? "drop" : "send";
  }

  /** The controls a test holds, for sockets of `WebSocket`. */
  controls<W>(WebSocket: W): CuttableSocket<W> {
    const faults = this;
    const killCurrent = () => {
      if (faults.current) faults.kill(faults.current);
    };
    return {
      WebSocket,
      cut: killCurrent,
      down: () => {
        faults.isDown = true;
        killCurrent();
      },
      up: () => {
        faults.isDown = false;
      },
      dropOutgoing: (predicate) => {
        faults.drop = predicate;
      },
      cutOnSend: (match) => {
        faults.lose = match;
      },
      get bytesSent() {
        return faults.bytesSent;
      },
      get bytesReceived() {
        return faults.bytesReceived;
      },
      get openedAt() {
        return faults.openedAt;
      },
    };
  }
}

/** A `ws` WebSocket class, what `cuttableSocket()` hands out. */
export type WsClass = new (url: string | URL, protocols?: string | string[]) => WebSocket;

/** A `ws` class whose sockets a test can cut, hold down and make lose frames. */
export function cuttableSocket(): CuttableSocket<WsClass> {
  const faults = new Faults<WebSocket>((ws) => ws.terminate());
  class Cuttable extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
      super(faults.isDown ? "ws://127.0.0.1:9/" : url, protocols);
      faults.current = this;
      this.on("open", () => {
        faults.openedAt = performance.now();
      });
      this.on("message", (data: Buffer | ArrayBuffer | Buffer[]) => {
        faults.bytesReceived += payloadBytes(data);
      });
    }

    override send(data: unknown, ...rest: unknown[]): void {
      const fate = faults.fate(data as OutgoingData);
      if (fate === "sever") this.terminate();
      if (fate !== "send") return;
      faults.bytesSent += payloadBytes(data as OutgoingData);
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return faults.controls(Cuttable);
}
