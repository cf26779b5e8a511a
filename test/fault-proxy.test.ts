import { once } from "node:events";
import { connect, createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type FaultProxy, startFaultProxy } from "../testing/fault-proxy.ts";
import { eventually } from "../testing/wait.ts";

/** An echo server and a proxy in front of it. */
async function setup() {
  const echo = createServer((s) => s.on("data", (d) => s.write(d)).on("error", () => {}));
  echo.listen(0, "127.0.0.1");
  await once(echo, "listening");
  const port = (echo.address() as { port: number }).port;
  const proxy = await startFaultProxy({ port });
  cleanups.push(
    () => proxy.close(),
    () => new Promise<void>((r) => echo.close(() => r())),
  );
  return proxy;
}

function client(proxy: FaultProxy) {
  const socket = connect(proxy.port, "127.0.0.1");
  let received = "";
  const events: string[] = [];
  socket.on("data", (d) => (received += d.toString()));
  socket.on("error", (e: NodeJS.ErrnoException) => events.push(`error:${e.code}`));
  socket.on("end", () => events.push("end"));
  socket.on("close", () => events.push("close"));
  return {
    socket,
    events,
    get received() {
      return received;
    },
  };
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe("fault proxy", () => {
  it("passes bytes both ways, then cuts with RST or FIN", async () => {
    const proxy = await setup();
    const a = client(proxy);
    a.socket.write("hello");
    await eventually(() => expect(a.received).toBe("hello"));
    proxy.cut("rst");
    await eventually(() => expect(a.events).toContain("error:ECONNRESET"));
    const b = client(proxy);
    b.socket.write("again");
    await eventually(() => expect(b.received).toBe("again"));
    proxy.cut("fin");
    await eventually(() => expect(b.events).toContain("end"));
    expect(b.events).not.toContain("error:ECONNRESET");
  });

  it("refuses new connections while refusing, and passes again after", async () => {
    const proxy = await setup();
    proxy.mode = "refuse";
    const a = client(proxy);
    await eventually(() => expect(a.events).toContain("close"));
    expect(a.received).toBe("");
    proxy.mode = "pass";
    const b = client(proxy);
    b.socket.write("back");
    await eventually(() => expect(b.received).toBe("back"));
    expect(proxy.accepted).toBe(2);
  });

  it("blackholes: the link stays open and silent for good; new links pass again", async () => {
    const proxy = await setup();
    const a = client(proxy);
    a.socket.write("1");
    await eventually(() => expect(a.received).toBe("1"));
    proxy.mode = "blackhole";
    a.socket.write("2");
    await new Promise((r) => setTimeout(r, 100));
    expect(a.received).toBe("1");
    expect(a.events).toEqual([]);
    proxy.mode = "pass";
    // "2" is gone: passing "3" would hand the peer a stream with a hole in it.
    a.socket.write("3");
    const b = client(proxy);
    b.socket.write("new");
    await eventually(() => expect(b.received).toBe("new"));
    expect(a.received).toBe("1");
    expect(a.events).toEqual([]);
  });

  it("stalls: what the far side sends waits, unread, and all of it arrives in order after", async () => {
    const proxy = await setup();
    const a = client(proxy);
    a.socket.write("1");
    await eventually(() => expect(a.received).toBe("1"));
    proxy.mode = "stall";
    // Enough to fill the kernel's buffers: the echo server's writes back up (it is not read).
    const chunk = "x".repeat(64 * 1024);
    for (let i = 0; i < 64; i++) a.socket.write(chunk);
    const b = client(proxy);
    b.socket.write("b");
    await new Promise((r) => setTimeout(r, 200));
    expect(a.received).toBe("1");
    expect(b.received).toBe("");
    expect(a.events).toEqual([]);
    proxy.mode = "pass";
    await eventually(() => expect(a.received.length).toBe(1 + 64 * chunk.length));
    expect(a.received).toBe(`1${chunk.repeat(64)}`);
    await eventually(() => expect(b.received).toBe("b"));
  });

  it("delays bytes by delayMs", async () => {
    const proxy = await setup();
    proxy.delayMs = 150;
    const a = client(proxy);
    const start = performance.now();
    a.socket.write("x");
    await eventually(() => expect(a.received).toBe("x"));
    // Two hops of 150 ms each; a lower bound only (a busy machine is slower, never faster).
    expect(performance.now() - start).toBeGreaterThanOrEqual(290);
  });

  it("keeps bytes in order when the delay drops mid-stream", async () => {
    const proxy = await setup();
    proxy.delayMs = 200;
    const a = client(proxy);
    a.socket.write("a");
    await new Promise((r) => setTimeout(r, 20));
    proxy.delayMs = 0;
    a.socket.write("b");
    await eventually(() => expect(a.received).toBe("ab"));
  });
});
