/**
 * One connected agent socket as the room sees it. The identity fields are stamped by the
 * room at connect time and never taken from frames.
 */
import * as decoding from "lib0/decoding";
import {
  batchOf,
  chunkBinary,
  createReassembler,
  type DocName,
  endOfTick,
  type Grants,
  MAX_BATCH_CHARS,
  MAX_FRAME_BYTES,
  MAX_REASSEMBLED_BYTES,
  type MethodInfo,
  type RoomFrame,
} from "../protocol/index.ts";
import type { Metrics } from "./metrics.ts";

/** The writer of stock Yjs clients without an identity: not a valid agent name, so no agent is it. */
export const ANONYMOUS_WRITER = "#anonymous";

/** The part of a PartyKit connection the room uses; also fits a raw WebSocket. */
export interface Socket {
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  /**
   * What the host keeps with the socket across a hibernation (a Durable Object WebSocket
   * attachment: PartyKit's `connection.setState`, at most 2,048 bytes). Absent on hosts that
   * never hibernate; the room then keeps nothing for a wake (`resume.ts`).
   */
  setState?(state: unknown): unknown;
  readonly state?: unknown;
}

export type SessionInit = {
  /** The largest binary frame the session may reassemble from chunks (`RoomLimits.maxUpdateBytes`). */
  maxFrameBytes?: number;
  /** Room-unique, increasing: tells an old socket of an agent from its replacement. */
  n: number;
  socket: Socket;
  agent: string;
  role: string;
  /** The client instance (partysocket id); the same instance reconnecting replaces itself. */
  instance: string;
  connectedAt: number;
  metrics: Metrics;
  /** The verified token's narrowing of the role's permissions (`Identity.scope`), if any. */
  scope?: readonly string[];
  /** When the verified token expires (ms since the epoch); the room closes the socket then. */
  expiresAt?: number;
  /** Who owns the Yjs client ids this session writes under (default: the agent); see `writer`. */
  writer?: string;
  /**
   * The bytes this session may have sent but not reported read (`flow.ts`), for a client that
   * reports what it reads; absent: not held to a budget (an older client, a stock Yjs client).
   */
  unreadBudget?: number;
  /** Past `unreadBudget`: the room ends the session with `SlowReader` (`Admission`). */
  tooSlow?: (session: Session) => void;
  /** The client reads batches (its URL said `batch=1`): the text frames of a tick go as one message. */
  batches?: boolean;
};

/** A frame waiting in a session's backlog: ready (text or binary), or being made. */
type Pending = string | Uint8Array | Promise<Uint8Array | null>;

export class Session {
  /** Documents this session has opened (sent a sync step 1 for). */
  readonly docs = new Set<string>();
  /** Methods the agent serves, as last announced with `rpc.handle`. */
  methods: string[] = [];
  /** What the agent told about those methods (`rpc.handle` `info`): descriptions and JSON Schemas. */
  methodInfo: Readonly<Record<string, MethodInfo>> | undefined = undefined;
  status: Record<string, import("zod").z.core.util.JSONType> = {};
  /**
   * Serializes this session's frames: a frame waiting on a document load holds the next.
   * Add to it with {@link enqueue} or {@link hold}, never directly: they count what is
   * unfinished, so a frame arriving when nothing is ({@link idle}) is handled at once,
   * without a promise per frame.
   */
  queue: Promise<void> = Promise.resolve();
  #pending = 0;
  closed = false;
  /**
   * What this session may do under the team's current policy (`policy.ts` decides from it):
   * set at admission, recomputed when the policy changes. Absent: nothing.
   */
  grants?: Grants;
  /** Joins chunked binary frames from this socket. */
  readonly reassembler: ReturnType<typeof createReassembler>;

  readonly n: number;
  readonly socket: Socket;
  readonly scope?: readonly string[];
  readonly expiresAt?: number;
  /**
   * The owner of the Yjs client ids this session writes under (`DocHub` binds each id to its
   * first writer): the agent, or {@link ANONYMOUS_WRITER} for a stock Yjs client that gave
   * no identity — so it can never write under an agent's ids.
   */
  readonly writer: string;
  readonly agent: string;
  readonly role: string;
  readonly instance: string;
  readonly connectedAt: number;
  readonly metrics: Metrics;
  /**
   * Sent and not yet reported read: text frames in UTF-16 units, binary frames in bytes, the
   * units a client counts on its side too (`read` frames take them off). An approximation of
   * the socket's backlog, kept for every session, since the host shows none (workerd's server
   * WebSocket has no usable `bufferedAmount`).
   */
  unread = 0;
  /** How far `unread` may go before traffic the client did not ask for stops; Infinity: no budget. */
  readonly unreadBudget: number;
  readonly #tooSlow: ((session: Session) => void) | undefined;
  /**
   * For a client that reads batches: the text frames sent in this tick, sent together at its
   * end (`batchOf`), in order; frames of every kind sent after them wait for them. Null when
   * the client reads one frame per message.
   */
  #tick: string[] | null;
  #tickChars = 0;

  constructor(init: SessionInit) {
    this.n = init.n;
    this.socket = init.socket;
    this.agent = init.agent;
    this.role = init.role;
    this.instance = init.instance;
    this.connectedAt = init.connectedAt;
    this.metrics = init.metrics;
    this.writer = init.writer ?? init.agent;
    this.unreadBudget = init.unreadBudget ?? Number.POSITIVE_INFINITY;
    this.#tooSlow = init.tooSlow;
    this.#tick = init.batches ? [] : null;
    // Room for the envelope (document name, message type) around the largest update.
    this.reassembler = createReassembler({ maxBytes: (init.maxFrameBytes ?? MAX_REASSEMBLED_BYTES) + 1024 });
    if (init.scope) this.scope = init.scope;
    if (init.expiresAt !== undefined) this.expiresAt = init.expiresAt;
  }

  /** Nothing queued is unfinished: a frame may be handled now, in order. */
  get idle(): boolean {
    return this.#pending === 0;
  }

  /** Runs `work` after everything queued before it; what comes next waits for it. `work` handles its own failures. */
  enqueue(work: () => unknown): void {
    this.#pending++;
    this.queue = this.queue.then(work).then(this.#settled, this.#failed);
  }

  /** Work already started while the session was {@link idle} (a handler waiting on storage): what comes next waits for it. */
  hold(running: Promise<unknown>): void {
    this.#pending++;
    this.queue = this.queue.then(() => running).then(this.#settled, this.#failed);
  }

  readonly #settled = (): void => {
    this.#pending--;
  };

  readonly #failed = (error: unknown): void => {
    this.#pending--;
    console.error(`[crosstalk] queued work of ${this.agent} failed`, error);
  };

  sendFrame(frame: RoomFrame): void {
    this.metrics.framesOut.incOne("type", frame.type);
    this.sendText(JSON.stringify(frame));
  }

  sendText(text: string): void {
    if (this.closed) return;
    if (this.#backlog) this.#backlog.push(text);
    else if (this.#tick) this.#batch(text);
    else this.#sendTextNow(text);
  }

  #batch(text: string): void {
    if (this.#tickChars + text.length > MAX_BATCH_CHARS) this.#flush();
    const tick = this.#tick as string[];
    // Counted now, as sent: a fan-out in the same tick must see it against the budget.
    this.unread += text.length;
    this.#tickChars += text.length;
    if (tick.push(text) === 1) void endOfTick.then(this.#flush);
  }

  /** Sends the text frames waiting for the end of this tick now (before the socket closes). */
  flush(): void {
    this.#flush();
  }

  /** Sends this tick's text frames: one as itself, several as a batch (its brackets and commas counted too). */
  readonly #flush = (): void => {
    const tick = this.#tick;
    if (!tick || tick.length === 0) return;
    this.#tick = [];
    this.#tickChars = 0;
    if (this.closed) return;
    if (tick.length > 1) this.unread += tick.length + 1;
    try {
      this.socket.send(tick.length === 1 ? (tick[0] as string) : batchOf(tick));
    } catch {
      // The socket closed under us; onClose will clean up.
    }
  };

  #sendTextNow(text: string): void {
    this.unread += text.length;
    try {
      this.socket.send(text);
    } catch {
      // The socket closed under us; onClose will clean up.
    }
  }

  /** Sends a binary doc frame (`encodeDocFrame`), chunked if large. */
  sendBinary(bytes: Uint8Array): void {
    if (this.closed) return;
    this.metrics.framesOut.inc({ type: "doc" });
    this.#flush();
    if (this.#backlog) this.#backlog.push(bytes);
    else this.#sendBinaryNow(bytes);
  }

  /**
   * Frames sent while one made asynchronously (`sendLater`) is not ready yet wait here, in
   * order, behind it; null when nothing is pending.
   */
  #backlog: Pending[] | null = null;

  /**
   * Sends the binary frame `pending` resolves to (nothing for null or a failure) before any
   * frame sent after this call: what a deflated snapshot is (`protocol/deflate.ts`).
   */
  sendLater(pending: Promise<Uint8Array | null>): void {
    if (this.closed) return;
    this.metrics.framesOut.inc({ type: "doc" });
    this.#flush();
    if (this.#backlog) {
      this.#backlog.push(pending);
      return;
    }
    this.#backlog = [pending];
    void this.#drain();
  }

  async #drain(): Promise<void> {
    const backlog = this.#backlog as Pending[];
    while (backlog.length > 0) {
      const next = backlog[0] as Pending;
      const ready = next instanceof Promise ? await next.catch(() => null) : next;
      backlog.shift();
      if (this.closed) continue;
      if (typeof ready === "string") this.#sendTextNow(ready);
      else if (ready) this.#sendBinaryNow(ready);
    }
    this.#backlog = null;
  }

  #sendBinaryNow(bytes: Uint8Array): void {
    try {
      if (bytes.byteLength <= MAX_FRAME_BYTES) {
        this.unread += bytes.byteLength;
        this.socket.send(bytes);
      } else {
        for (const part of chunkBinary(bytes)) {
          this.unread += part.byteLength;
          this.socket.send(part);
        }
      }
    } catch {
      // As above.
    }
  }

  /**
   * Fan-out: traffic the client did not ask for (document updates, feed events, roster
   * changes) goes through these. Past the unread budget nothing more is sent and the session
   * is ended as too slow. Replies to its own requests never stop here: a large catch-up it
   * asked for is read before the next fan-out finds it behind, unless it stopped reading.
   */
  pushBinary(bytes: Uint8Array): void {
    if (this.unread > this.unreadBudget) return this.#slow();
    this.sendBinary(bytes);
  }

  pushText(text: string): void {
    if (this.unread > this.unreadBudget) return this.#slow();
    this.sendText(text);
  }

  pushFrame(frame: RoomFrame): void {
    if (this.unread > this.unreadBudget) return this.#slow();
    this.sendFrame(frame);
  }

  /** The client read `bytes` more (a `read` frame). Never below zero: after a wake the count restarts. */
  read(bytes: number): void {
    this.unread = bytes >= this.unread ? 0 : this.unread - bytes;
  }

  #slow(): void {
    if (!this.closed) this.#tooSlow?.(this);
  }
}

/**
 * A stock Yjs client (y-websocket's `WebsocketProvider`, an editor binding) syncing one
 * document at `/parties/main/<team>?doc=state/<ns>`: plain y-websocket messages, no
 * envelope, no control frames. Not an agent: it is not in the roster.
 */
export class RawDocSession extends Session {
  constructor(
    init: Omit<SessionInit, "role" | "instance"> & {
      /** The verified token's role; `yjs` only for a client with no identity (an in-process host). */
      role?: string;
    },
    /** The one document this socket syncs. */
    readonly doc: DocName,
  ) {
    super({ ...init, role: init.role ?? "yjs", instance: `raw-${init.n}` });
  }

  /** Strips the doc-frame envelope: a stock client speaks bare y-websocket messages. */
  override sendBinary(bytes: Uint8Array): void {
    if (this.closed) return;
    const decoder = decoding.createDecoder(bytes);
    decoding.readVarUint(decoder);
    decoding.readVarString(decoder);
    try {
      this.socket.send(bytes.subarray(decoder.pos));
    } catch {
      // Closed under us.
    }
  }

  /** Relays a stock client's bare y-websocket message (awareness) to this one, as it came. */
  relay(bytes: Uint8Array): void {
    if (this.closed) return;
    try {
      this.socket.send(bytes);
    } catch {
      // Closed under us: onClose will clean up; the other peers still get theirs.
    }
  }

  /** Control frames mean nothing to a stock client. */
  override sendFrame(): void {}
}
