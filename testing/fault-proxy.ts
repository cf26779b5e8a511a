/**
 * A TCP fault proxy: sits between agents and a room and breaks the link the ways networks do.
 * No npm package does this offline, so it is ~80 lines of `node:net`.
 *
 * - `pass`: bytes flow (optionally delayed by `delayMs`).
 * - `refuse`: new connections are reset at once; open ones are left alone.
 * - `cut("rst" | "fin")`: every open connection is reset (RST) or closed (FIN) on both sides.
 * - `blackhole`: open and new connections stay up but every byte is dropped (a half-open link,
 *   found only by a heartbeat). A connection once blackholed stays so after the mode changes
 *   back: its dropped bytes are gone, so passing later ones would hand the peers a corrupt
 *   stream no real network produces (TCP retransmits or the link dies). Only new connections
 *   pass again.
 *
 * - `stall`: open and new connections stay up, agent to room flows, but the proxy stops
 *   reading what the room sends: the kernel buffers fill and the room's sends back up, as
 *   when an agent stops reading its socket (a frozen tab, a blocked event loop). Back to
 *   `pass`, everything held arrives, in order.
 *
 * Bytes keep their order through changes of `delayMs` (a chunk never overtakes an earlier one).
 */
import { createServer, type Server, type Socket } from "node:net";

export type FaultMode = "pass" | "refuse" | "blackhole" | "stall";

export type FaultProxy = {
  /** The proxy's port on 127.0.0.1: point agents at `127.0.0.1:<port>`. */
  readonly port: number;
  readonly host: string;
  mode: FaultMode;
  /** Delay added to every chunk in both directions while passing (ms). */
  delayMs: number;
  /** Connections accepted so far (refused ones included). */
  readonly accepted: number;
  /**
   * When (`performance.now()`) each connection was holed: a blackhole breaks a link only once
   * bytes cross it while the mode is on; an idle link outlives a short blackhole unharmed.
   */
  readonly holed: readonly number[];
  /** Breaks every open connection: `rst` resets both sides, `fin` ends them cleanly. */
  cut(how?: "rst" | "fin"): void;
  close(): Promise<void>;
};

export async function startFaultProxy(target: { host?: string; port: number }): Promise<FaultProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let accepted = 0;
  const state = { mode: "pass" as FaultMode, delayMs: 0 };
  const holed = new WeakSet<Socket>();
  const holedAt: number[] = [];
  const pipe = (from: Socket, to: Socket) => {
    // Chunks wait in one queue per direction, so none overtakes an earlier one (separate
    // timers could fire out of order when the delay changes).
    const queue: { chunk: Buffer; at: number }[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && (queue[0] as { at: number }).at <= now) {
        const { chunk } = queue.shift() as { chunk: Buffer };
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(flush, (queue[0] as { at: number }).at - now);
    };
    from.on("data", (chunk: Buffer) => {
      if (state.mode === "blackhole" && !holed.has(from)) {
        holed.add(from).add(to);
        holedAt.push(performance.now());
      }
      if (holed.has(from)) return;
      const now = performance.now();
      if (queue.length === 0 && state.delayMs <= 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      queue.push({ chunk, at: now + state.delayMs });
      if (timer === undefined) timer = setTimeout(flush, Math.max(0, (queue[0] as { at: number }).at - now));
    });
  };
  const server: Server = createServer((client) => {
    accepted++;
    if (state.mode === "refuse") {
      client.resetAndDestroy();
      return;
    }
    const upstream = new (client.constructor as typeof Socket)();
    upstream.connect(target.port, target.host ?? "127.0.0.1");
    if (state.mode === "stall") upstream.pause();
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) {
      s.setNoDelay(true);
      s.on("error", end);
      s.on("close", end);
    }
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("fault proxy has no port");
  return {
    port: address.port,
    host: `127.0.0.1:${address.port}`,
    get mode() {
      return state.mode;
    },
    set mode(mode: FaultMode) {
      state.mode = mode;
      // The room's side of each pair is the one not read while stalled.
      for (const [, upstream] of pairs) mode === "stall" ? upstream.pause() : upstream.resume();
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    get accepted() {
      return accepted;
    },
    holed: holedAt,
    cut(how = "rst") {
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        for (const s of pair) how === "rst" ? s.resetAndDestroy() : s.end();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const pair of pairs) for (const s of pair) s.destroy();
        pairs.clear();
        server.close(() => resolve());
      }),
  };
}
