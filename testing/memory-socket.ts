/**
 * WebSockets that never leave the process: the browser `WebSocket` surface partysocket and
 * y-websocket use (`readyState`, `binaryType`, `send`, `close`, `on*` handlers and
 * `addEventListener`), wired to a room's callbacks instead of a TCP connection.
 *
 * It behaves like a real socket where tests can tell the difference: every frame, open and
 * close is delivered on a later macrotask (in order, never re-entrantly); bytes are copied
 * when sent, so the sender may reuse its buffer; close codes and reasons reach the other
 * end; a dropped connection (`sever`) is a 1006 close without a handshake. Exists for
 * `createTestRoom`; Node-only (it schedules with `setImmediate`).
 */
import type { OutgoingData } from "./cuttable.ts";

/** PartyKit's callbacks for one room, as the in-process server calls them. */
export interface MemoryRoomHandler {
  /** A socket opened (`onConnect`), with the URL it dialled (`http:` scheme, like PartyKit passes it). */
  connect(end: RoomEnd, url: URL): void;
  /** A frame from the client (`onMessage`): a string, or an `ArrayBuffer` of its own. */
  message(end: RoomEnd, data: string | ArrayBuffer): void;
  /** The socket is gone (`onClose`), however it went. */
  close(end: RoomEnd): void;
}

/** How the sockets of one class reach rooms, and what a test may do on the way. */
export interface MemoryNetwork {
  /** The room a URL reaches, or null when nothing answers there (unknown host, room killed, network down). */
  dial(url: URL): MemoryRoomHandler | null;
  /** Told of every socket as it is created. */
  created?(socket: MemoryWebSocket): void;
  /** A socket opened. */
  opened?(): void;
  /** What becomes of an outgoing frame: it leaves (the default), is lost, or is lost and the link dies. */
  outgoing?(data: OutgoingData): "send" | "drop" | "sever";
  /**
   * Hands each frame from the room to the client: at once by default; a test may hold
   * `deliver` back and call it later (a link that lags behind the room).
   */
  incoming?(deliver: () => void): void;
  /** Payload bytes, once sent and once delivered to the client. */
  sent?(bytes: number): void;
  received?(bytes: number): void;
}

/** A close event; Node 20 has no global `CloseEvent`. */
export class MemoryCloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;

  constructor(init: { code: number; reason: string; wasClean: boolean }) {
    super("close");
    this.code = init.code;
    this.reason = init.reason;
    this.wasClean = init.wasClean;
  }
}

/** A frame as it crosses the wire: text, or a private copy of the bytes. */
function toWire(data: OutgoingData): { data: string | ArrayBuffer; bytes: number } {
  if (typeof data === "string") return { data, bytes: Buffer.byteLength(data) };
  if (data instanceof ArrayBuffer) return { data: data.slice(0), bytes: data.byteLength };
  if (ArrayBuffer.isView(data)) {
    const copy = new Uint8Array(data.byteLength);
    copy.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return { data: copy.buffer, bytes: data.byteLength };
  }
  throw new TypeError("MemoryWebSocket sends strings, ArrayBuffers and typed arrays (a Blob would need an async read)");
}

const macrotask = (fn: () => void) => setImmediate(fn);

/**
 * The room's side of one connection: what `TeamRoom.connect` receives as its socket
 * (`send`, `close`). Created by the client socket when the room answers.
 */
export class RoomEnd {
  /** Whether the room may still send: false once either side closed or the link was severed. */
  #open = true;
  /** The link was cut: nothing in flight arrives any more, in either direction. */
  #severed = false;
  /** The room has been told the socket is gone (`onClose` runs once). */
  #told = false;

  constructor(
    readonly room: MemoryRoomHandler,
    private readonly client: {
      receive(data: string | ArrayBuffer, bytes: number, end: RoomEnd): void;
      closedByRoom(code: number, reason: string, end: RoomEnd): void;
      dropped(end: RoomEnd): void;
    },
  ) {}

  get severed(): boolean {
    return this.#severed;
  }

  send(data: string | ArrayBuffer | ArrayBufferView): void {
    if (!this.#open) return;
    const wire = toWire(data);
    macrotask(() => {
      if (!this.#severed) this.client.receive(wire.data, wire.bytes, this);
    });
  }

  close(code = 1005, reason = ""): void {
    if (!this.#open) return;
    this.#open = false;
    macrotask(() => {
      if (this.#severed) return;
      this.client.closedByRoom(code, reason, this);
      this.tellRoom();
    });
  }

  /** A frame from the client, unless the link is gone. */
  deliver(data: string | ArrayBuffer): void {
    if (!this.#severed && !this.#told) this.room.message(this, data);
  }

  /** The client finished closing: the room hears of it once. */
  tellRoom(): void {
    this.#open = false;
    if (this.#told) return;
    this.#told = true;
    this.room.close(this);
  }

  /** Drops the link without a handshake: the client sees 1006; the room hears of it unless it is dead itself. */
  sever(tellRoom: boolean): void {
    if (this.#severed) return;
    this.#open = false;
    this.#severed = true;
    macrotask(() => {
      this.client.dropped(this);
      if (tellRoom) this.tellRoom();
    });
  }
}

type Handler = ((event: Event) => void) | null;

/**
 * A browser-compatible WebSocket over a {@link MemoryNetwork}. Use a class bound to a network
 * (`TestRoom.WebSocket`, `memoryWebSocketClass(network)`): its constructor takes `(url, protocols?)`.
 */
export class MemoryWebSocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  readonly CONNECTING = 0;
  readonly OPEN = 1;
  readonly CLOSING = 2;
  readonly CLOSED = 3;

  readonly url: string;
  /** No subprotocol is ever selected. */
  readonly protocol = "";
  readonly extensions = "";
  /** Frames leave at once: nothing is ever buffered. */
  readonly bufferedAmount = 0;
  onopen: Handler = null;
  onmessage: Handler = null;
  onclose: Handler = null;
  onerror: Handler = null;

  #readyState = MemoryWebSocket.CONNECTING;
  #binaryType: BinaryType = "blob";
  #end: RoomEnd | null = null;
  readonly #network: MemoryNetwork;

  constructor(url: string | URL, _protocols: string | string[] | undefined, network: MemoryNetwork) {
    super();
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new DOMException(`Invalid URL: ${String(url)}`, "SyntaxError");
    }
    if (parsed.protocol === "http:" || parsed.protocol === "https:")
      parsed.protocol = parsed.protocol.replace("http", "ws");
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new DOMException(`The URL's scheme must be ws or wss: ${parsed.href}`, "SyntaxError");
    }
    this.url = parsed.href;
    this.#network = network;
    network.created?.(this);
    macrotask(() => this.#open(parsed));
  }

  get readyState(): number {
    return this.#readyState;
  }

  get binaryType(): BinaryType {
    return this.#binaryType;
  }

  /** Like a browser, an unknown value is ignored. */
  set binaryType(value: BinaryType) {
    if (value === "blob" || value === "arraybuffer") this.#binaryType = value;
  }

  send(data: OutgoingData): void {
    if (this.#readyState === MemoryWebSocket.CONNECTING) {
      throw new DOMException(
        "Failed to execute 'send' on 'WebSocket': Still in CONNECTING state.",
        "InvalidStateError",
      );
    }
    const end = this.#end;
    if (this.#readyState !== MemoryWebSocket.OPEN || !end) return;
    const fate = this.#network.outgoing?.(data) ?? "send";
    if (fate === "sever") this.sever();
    if (fate !== "send") return;
    const wire = toWire(data);
    this.#network.sent?.(wire.bytes);
    macrotask(() => end.deliver(wire.data));
  }

  close(code?: number, reason?: string): void {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new DOMException(`The close code must be 1000 or in 3000-4999: ${code}`, "InvalidAccessError");
    }
    if (this.#readyState === MemoryWebSocket.CLOSING || this.#readyState === MemoryWebSocket.CLOSED) return;
    const end = this.#end;
    const wasOpen = this.#readyState === MemoryWebSocket.OPEN;
    this.#readyState = MemoryWebSocket.CLOSING;
    macrotask(() => {
      if (!wasOpen || !end) return this.#fail();
      end.tellRoom();
      this.#finish({ code: code ?? 1005, reason: reason ?? "", wasClean: true });
    });
  }

  /** Drops the connection without a handshake: a 1006 close here; the room hears of it if `tellRoom`. */
  sever(tellRoom = true): void {
    if (this.#readyState === MemoryWebSocket.CLOSED) return;
    const end = this.#end;
    if (!end) {
      this.#readyState = MemoryWebSocket.CLOSING;
      macrotask(() => this.#fail());
      return;
    }
    this.#readyState = MemoryWebSocket.CLOSING;
    end.sever(tellRoom);
  }

  #open(url: URL): void {
    if (this.#readyState !== MemoryWebSocket.CONNECTING) return;
    const room = this.#network.dial(url);
    if (!room) return this.#fail();
    const end = new RoomEnd(room, {
      receive: (data, bytes, from) => {
        const deliver = () => {
          if (from !== this.#end || this.#readyState !== MemoryWebSocket.OPEN) return;
          this.#network.received?.(bytes);
          const payload = typeof data === "string" || this.#binaryType === "arraybuffer" ? data : new Blob([data]);
          this.#emit(new MessageEvent("message", { data: payload, origin: new URL(this.url).origin }));
        };
        if (this.#network.incoming) this.#network.incoming(deliver);
        else deliver();
      },
      closedByRoom: (code, reason, from) => {
        if (from !== this.#end || this.#readyState === MemoryWebSocket.CLOSED) return;
        this.#finish({ code, reason, wasClean: true });
      },
      dropped: (from) => {
        if (from === this.#end) this.#finish({ code: 1006, reason: "", wasClean: false });
      },
    });
    this.#end = end;
    this.#readyState = MemoryWebSocket.OPEN;
    this.#network.opened?.();
    this.#emit(new Event("open"));
    const http = new URL(url);
    http.protocol = url.protocol === "wss:" ? "https:" : "http:";
    room.connect(end, http);
  }

  /** The connection failed (nothing answered, or closed before it opened): error, then a 1006 close. */
  #fail(): void {
    if (this.#readyState === MemoryWebSocket.CLOSED) return;
    this.#readyState = MemoryWebSocket.CLOSED;
    this.#emit(new Event("error"));
    this.#emit(new MemoryCloseEvent({ code: 1006, reason: "", wasClean: false }));
  }

  #finish(init: { code: number; reason: string; wasClean: boolean }): void {
    if (this.#readyState === MemoryWebSocket.CLOSED) return;
    this.#readyState = MemoryWebSocket.CLOSED;
    this.#emit(new MemoryCloseEvent(init));
  }

  #emit(event: Event): void {
    const handler = { open: this.onopen, message: this.onmessage, close: this.onclose, error: this.onerror }[
      event.type as "open" | "message" | "close" | "error"
    ];
    handler?.call(this, event);
    this.dispatchEvent(event);
  }
}

/** A WebSocket class whose sockets all go through `network`: what `connect({ WebSocket })` takes. */
export type MemoryWebSocketClass = (new (
  url: string | URL,
  protocols?: string | string[],
) => MemoryWebSocket) & {
  readonly CONNECTING: number;
  readonly OPEN: number;
  readonly CLOSING: number;
  readonly CLOSED: number;
};

export function memoryWebSocketClass(network: MemoryNetwork): MemoryWebSocketClass {
  return class InProcessWebSocket extends MemoryWebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols, network);
    }
  };
}
