/**
 * The room's JS heap, read through the dev server's V8 inspector: what `room.heap()` of
 * `startRoom()` returns. The room itself cannot know it (workerd gives a script no heap API:
 * no `process.memoryUsage`, no `performance.memory`), and the process RSS cannot tell a leak
 * from garbage the isolate has not collected yet, so tests and the bench ask from outside.
 *
 * How, as found on partykit 0.0.115 (workerd 2024-07-18):
 * - `partykit dev` starts workerd with an inspector and attaches its own session to the user
 *   worker (`core:user:`); a second session on workerd's port is never answered. partykit
 *   re-exposes that one session on a proxy port of its own (9229 when free, any port
 *   otherwise, not printed), which takes one client at a time. The proxy is found among the
 *   `partykit dev` process's listening sockets (Linux `/proc`) by its `/json/version`.
 * - `wrangler dev --inspector-port <p>` serves the same protocol on the port the kit chose.
 * - `HeapProfiler.collectGarbage` is never answered by workerd; `takeHeapSnapshot` is (a
 *   snapshot starts with a full GC), so the heap after GC is `Runtime.getHeapUsage` right
 *   after a snapshot, whose chunks are discarded.
 * - CPU profiles (`Profiler.start`) of partykit's own workerd are nearly empty: it runs
 *   inspector commands on a thread of their own, and V8 samples the thread that started the
 *   profiler (cloudflare/workerd#1754, fixed by workerd#2497): 14 samples in 0.43 s of a busy
 *   room, against ~100 in 0.5 s with wrangler's newer workerd, ~700/s at a 250 µs interval.
 *   The bench's profilers run `partykit dev` on that workerd (`MINIFLARE_WORKERD_PATH`).
 *
 * Node-only, like the rest of the kit. Not re-exported from the kit's entry point; used by
 * `dev-server.ts`.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import WebSocket from "ws";
import { TestKitError } from "./errors.ts";

/** High ids, so replies to partykit's own session messages (counted from 1) are never taken for ours. */
let nextId = 1_000_000_000;

/** TCP ports process `pid` listens on (Linux `/proc`; empty elsewhere). */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // Closed meanwhile.
    }
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f[3] !== "0A" || !inodes.has(f[9] ?? "")) continue; // 0A: LISTEN
      ports.push(Number.parseInt(f[1]?.split(":").pop() ?? "", 16));
    }
  }
  return ports;
}

/** The inspector endpoint of `partykit dev` process `pid`: its proxy, told apart by `/json/version`. */
export async function partykitInspector(pid: number): Promise<string> {
  for (const port of listeningPorts(pid)) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/json/version`, { signal: AbortSignal.timeout(2000) });
      const body = (await res.json()) as { Browser?: string };
      if (body.Browser?.startsWith("partykit/")) return `127.0.0.1:${port}`;
    } catch {
      // Not the inspector (the room's own port answers something else, or nothing JSON).
    }
  }
  throw new TestKitError(
    "INVALID_ARGUMENT",
    `heap(): no inspector found for partykit dev ${pid} (it is looked up in Linux /proc)`,
  );
}

/** One session on the user worker's inspector: `call` sends a method and resolves with its result. */
export type InspectorSession = {
  call(method: string, params?: object): Promise<unknown>;
  /** Calls `fn` with the params of every event `method` sent from now on (e.g. `Debugger.scriptParsed`). */
  on(method: string, fn: (params: unknown) => void): void;
  close(): void;
};

/**
 * Opens a session on the user worker's inspector at `address` (`host:port` serving
 * `/json/list`). `label` names the caller in errors.
 */
export async function inspectorSession(address: string, label: string): Promise<InspectorSession> {
  const list = (await (await fetch(`http://${address}/json/list`)).json()) as {
    id: string;
    webSocketDebuggerUrl: string;
  }[];
  // wrangler lists workerd's internal workers too; the user's is `core:user:<name>`.
  const target = list.find((t) => t.id.startsWith("core:user")) ?? list[0];
  if (!target) throw new TestKitError("INVALID_ARGUMENT", `${label}: the inspector at ${address} lists no worker`);
  const url = new URL(target.webSocketDebuggerUrl);
  url.host = address;
  const ws = new WebSocket(url);
  const replies = new Map<number, (reply: { result?: unknown; error?: { message: string } }) => void>();
  const events = new Map<string, (params: unknown) => void>();
  ws.on("message", (data) => {
    const text = String(data);
    // Snapshot chunks are most of the traffic and never needed.
    if (text.startsWith('{"method":"HeapProfiler.addHeapSnapshotChunk"')) return;
    const reply = JSON.parse(text) as {
      id?: number;
      method?: string;
      params?: unknown;
      result?: unknown;
      error?: { message: string };
    };
    if (reply.id !== undefined) replies.get(reply.id)?.(reply);
    else if (reply.method !== undefined) events.get(reply.method)?.(reply.params);
  });
  try {
    await new Promise((res, rej) => {
      ws.once("open", res);
      ws.once("error", rej);
    });
  } catch (error) {
    ws.terminate();
    throw error;
  }
  return {
    call: (method, params = {}) =>
      new Promise<unknown>((res, rej) => {
        const id = ++nextId;
        replies.set(id, (reply) => {
          replies.delete(id);
          if (reply.error) rej(new TestKitError("INVALID_ARGUMENT", `${label}: ${method}: ${reply.error.message}`));
          else res(reply.result);
        });
        ws.send(JSON.stringify({ id, method, params }));
      }),
    on: (method, fn) => void events.set(method, fn),
    close: () => ws.terminate(),
  };
}

/**
 * The user worker's JS heap in MB after a full GC, through the inspector at `address`
 * (`host:port` serving `/json/list`).
 */
export async function heapAfterGcMb(address: string, timeoutMs = 120_000): Promise<number> {
  let session: InspectorSession | undefined;
  let over = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(
      () => rej(new TestKitError("INVALID_ARGUMENT", `heap(): the inspector did not answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  const measure = async () => {
    session = await inspectorSession(address, "heap()");
    // Opened after the timeout: nobody closes it but this.
    if (over) session.close();
    await session.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    const usage = (await session.call("Runtime.getHeapUsage")) as { usedSize: number };
    return usage.usedSize / 1024 / 1024;
  };
  try {
    return await Promise.race([measure(), timeout]);
  } finally {
    over = true;
    clearTimeout(timer);
    (session as InspectorSession | undefined)?.close();
  }
}
