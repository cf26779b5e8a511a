/**
 * An agent in a Chromium tab keeps working without the network and lands everything exactly
 * once when it comes back. The tab is the demo page (its service worker caches the app shell)
 * with a writer agent of the client library beside it (bundled here and added to the page),
 * persisting to IndexedDB under the tab's instance id. Cut off with `routeWebSocket` (the
 * routed sockets closed, new ones refused) and `setOffline` (HTTP), it writes state and
 * publishes 1,000 events, is reloaded offline, still has them (pending = 1000), and comes
 * back: a second tab sees every event exactly once and the same state. A duplicated tab gets
 * a new instance id. Also the IndexedDB storage itself in the real browser.
 */
import { join, resolve } from "node:path";
import { type BrowserContext, expect, type Page, test, type WebSocketRoute } from "@playwright/test";
import { build } from "esbuild";
import { type RoomServer, startRoom } from "../harness.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const EVENTS = 1000;

let room: RoomServer;
let bundle: string;
test.beforeAll(async () => {
  room = await startRoom({ config: join(ROOT, "partykit.json"), vars: { CROSSTALK_DEV: "1" } });
  // The client library as the page would bundle it, exposed for the test to drive.
  const out = await build({
    stdin: {
      contents: `import * as crosstalk from "./client/index.ts"; globalThis.crosstalk = crosstalk;`,
      resolveDir: ROOT,
      loader: "ts",
    },
    bundle: true,
    format: "iife",
    platform: "browser",
    write: false,
  });
  bundle = out.outputFiles[0]?.text ?? "";
});
test.afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** A switch for the context's WebSockets: while off, open ones are closed and new ones refused. */
async function cuttableNetwork(context: BrowserContext) {
  let offline = false;
  const open = new Set<WebSocketRoute>();
  await context.routeWebSocket(/\/parties\//, (ws) => {
    if (offline) return void ws.close({ code: 1006 });
    const server = ws.connectToServer();
    open.add(ws);
    ws.onClose(() => {
      open.delete(ws);
      server.close();
    });
    server.onClose(() => {
      open.delete(ws);
      ws.close();
    });
  });
  return {
    async set(on: boolean) {
      offline = !on;
      await context.setOffline(!on);
      if (!on) for (const ws of [...open]) await ws.close({ code: 1006 });
    },
  };
}

/** Adds the client library to the page (inline: no network needed) and waits for the service worker. */
async function prepare(page: Page): Promise<void> {
  await page.addScriptTag({ content: bundle });
  await page.waitForFunction(() => navigator.serviceWorker?.controller !== null);
}

test("an offline tab keeps its writes across a reload and lands them exactly once", async ({ context }) => {
  const team = room.team("offline");
  const net = await cuttableNetwork(context);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`http://${room.host}/?team=${team}&agent=viewer-offline`);
  await prepare(page);

  /** Starts the writer agent in the page: its tab instance, its IndexedDB storage, `connect({ persist })`. */
  const startWriter = () =>
    page.evaluate(async (team) => {
      const ct = (globalThis as unknown as { crosstalk: typeof import("../../client/index.ts") }).crosstalk;
      const tab = await ct.claimTabInstance({ team, agent: "writer" });
      const storage = await ct.openIndexedDbStorage({ team, agent: "writer", instance: tab.id });
      const token = async () => {
        const q = new URLSearchParams({ agent: "writer", role: "writer" });
        const res = await fetch(`/parties/main/${team}/dev/token?${q}`).catch(() => null);
        return res?.ok ? ((await res.json()) as { token: string }).token : "";
      };
      const writer = await ct.connect({
        host: location.host,
        team,
        agent: "writer",
        role: "writer",
        token,
        persist: storage,
        waitForOnline: false,
      });
      (globalThis as unknown as { writer: typeof writer }).writer = writer;
      return { instance: tab.id, fresh: tab.fresh };
    }, team);
  type W = { writer: import("../../client/index.ts").Team };

  const first = await startWriter();
  expect(first.fresh).toBe(true);
  await page.waitForFunction(() => (globalThis as unknown as W).writer.status === "online");

  // Cut off: the writer works on.
  await net.set(false);
  await page.waitForFunction(() => (globalThis as unknown as W).writer.status !== "online");
  const written = await page.evaluate(async (n) => {
    const { writer } = globalThis as unknown as W;
    const notes = writer.state("notes");
    for (let i = 0; i < 20; i++) notes.set(`note-${i}`, { text: `offline ${i}` });
    // One at a time, as an app publishes: each is its own outbox entry (publishes of one tick
    // share one), durable in IndexedDB when its promise resolves.
    const settled = [];
    for (let i = 0; i < n; i++) settled.push(await writer.publish("note.written", { i }, { id: `ev-${i}` }));
    await writer.flushed();
    return { pending: writer.pending().count, allPending: settled.every((r) => r.pending === true) };
  }, EVENTS);
  expect(written).toEqual({ pending: EVENTS, allPending: true });

  // Reloaded offline: the service worker serves the page; IndexedDB still has everything.
  await page.reload();
  await prepare(page);
  const again = await startWriter();
  expect(again).toEqual({ instance: first.instance, fresh: false });
  const restored = await page.evaluate(async () => {
    const { writer } = globalThis as unknown as W;
    const notes = writer.state("notes");
    return { pending: writer.pending().count, notes: notes.size, status: writer.status };
  });
  expect(restored).toEqual({ pending: EVENTS, notes: 20, status: expect.not.stringMatching(/^online$/) });
  await expect(page.locator('[data-testid="team-name"]')).toHaveText(team);

  // A duplicated tab (window.open copies sessionStorage) gets an instance id of its own.
  const [duplicate] = await Promise.all([
    context.waitForEvent("page"),
    page.evaluate(() => void window.open(location.href)),
  ]);
  await duplicate.waitForLoadState();
  await prepare(duplicate);
  const dup = await duplicate.evaluate(async (team) => {
    const ct = (globalThis as unknown as { crosstalk: typeof import("../../client/index.ts") }).crosstalk;
    const copied = sessionStorage.getItem(`crosstalk/${team}/writer/instance`);
    const tab = await ct.claimTabInstance({ team, agent: "writer" });
    return { copied, id: tab.id, fresh: tab.fresh };
  }, team);
  expect(dup.copied).toBe(first.instance);
  expect(dup.fresh).toBe(true);
  expect(dup.id).not.toBe(first.instance);
  await duplicate.close();

  // Back online: everything lands, once.
  await net.set(true);
  await page.evaluate(() => (globalThis as unknown as W).writer.synced({ timeoutMs: 60_000 }));
  expect(await page.evaluate(() => (globalThis as unknown as W).writer.pending().count)).toBe(0);

  const reader = await context.newPage();
  await reader.goto(`http://${room.host}/?team=${team}&agent=viewer-reader`);
  await prepare(reader);
  const seen = await reader.evaluate(async (team) => {
    const ct = (globalThis as unknown as { crosstalk: typeof import("../../client/index.ts") }).crosstalk;
    const q = new URLSearchParams({ agent: "reader", role: "reader" });
    const token = async () =>
      ((await (await fetch(`/parties/main/${team}/dev/token?${q}`)).json()) as { token: string }).token;
    const t = await ct.connect({ host: location.host, team, agent: "reader", role: "reader", token });
    const ids: string[] = [];
    for await (const e of t.history()) ids.push(e.id);
    const notes = t.state("notes");
    await notes.ready;
    const state = notes.toJSON();
    await t.close();
    return { ids, state };
  }, team);
  expect(seen.ids).toEqual(Array.from({ length: EVENTS }, (_, i) => `ev-${i}`));
  const mine = await page.evaluate(() => (globalThis as unknown as W).writer.state("notes").toJSON());
  expect(seen.state).toEqual(mine);
  expect(Object.keys(seen.state)).toHaveLength(20);
  expect(errors).toEqual([]);
});

test("a tab that finds a closed tab's outbox flushes it, once", async ({ context }) => {
  const team = room.team("orphan");
  const net = await cuttableNetwork(context);
  await net.set(false);
  await context.setOffline(false); // HTTP stays up: only the sockets are refused.
  const writeOffline = async (page: Page) => {
    await page.goto(`http://${room.host}/?team=${team}&agent=viewer-${Math.random().toString(36).slice(2, 8)}`);
    await prepare(page);
    return page.evaluate(async (team) => {
      const ct = (globalThis as unknown as { crosstalk: typeof import("../../client/index.ts") }).crosstalk;
      const tab = await ct.claimTabInstance({ team, agent: "writer" });
      const storage = await ct.openIndexedDbStorage({ team, agent: "writer", instance: tab.id });
      const t = await ct.connect({
        host: location.host,
        team,
        agent: "writer",
        role: "writer",
        persist: storage,
        waitForOnline: false,
      });
      for (let i = 0; i < 10; i++) await t.publish("note.written", { i }, { id: `orphan-${i}` });
      return { id: tab.id, pending: t.pending().count };
    }, team);
  };
  const closed = await context.newPage();
  const dead = await writeOffline(closed);
  expect(dead.pending).toBe(10);
  await closed.close();

  await net.set(true);
  const adopter = await context.newPage();
  await adopter.goto(`http://${room.host}/?team=${team}&agent=viewer-adopter`);
  await prepare(adopter);
  const adopted = await adopter.evaluate(async (team) => {
    const ct = (globalThis as unknown as { crosstalk: typeof import("../../client/index.ts") }).crosstalk;
    const q = new URLSearchParams({ agent: "writer", role: "writer" });
    const token = async () =>
      ((await (await fetch(`/parties/main/${team}/dev/token?${q}`)).json()) as { token: string }).token;
    const tab = await ct.claimTabInstance({ team, agent: "writer" });
    const orphans = await tab.orphans();
    const flushed: string[] = [];
    // Before this tab's own instance connects: two live connections of one agent take each other over.
    for (const orphan of orphans) {
      const storage = await ct.openIndexedDbStorage({ team, agent: "writer", instance: orphan.id });
      const t = await ct.connect({
        host: location.host,
        team,
        agent: "writer",
        role: "writer",
        token,
        persist: storage,
        instance: orphan.id,
      });
      await t.synced({ timeoutMs: 30_000 });
      await t.close();
      await ct.deleteIndexedDbStorage({ team, agent: "writer", instance: orphan.id });
      tab.forget(orphan.id);
      orphan.release();
      flushed.push(orphan.id);
    }
    const reader = await ct.connect({
      host: location.host,
      team,
      agent: "reader",
      role: "reader",
      token: async () =>
        ((await (await fetch(`/parties/main/${team}/dev/token?agent=reader&role=reader`)).json()) as { token: string })
          .token,
    });
    const ids: string[] = [];
    for await (const e of reader.history()) ids.push(e.id);
    await reader.close();
    return { flushed, ids, left: (await tab.orphans()).map((o) => o.id) };
  }, team);
  expect(adopted).toEqual({
    flushed: [dead.id],
    ids: Array.from({ length: 10 }, (_, i) => `orphan-${i}`),
    left: [],
  });
});

test("IndexedDbStorage in Chromium: durable batches, prefix scans, STORAGE_FULL at the quota", async ({ page }) => {
  await page.goto(`http://${room.host}/?team=${room.team("idb")}`);
  await page.addScriptTag({ content: bundle });
  const result = await page.evaluate(async () => {
    const ct = (globalThis as unknown as { crosstalk: typeof import("../../client/index.ts") }).crosstalk;
    const enc = (s: string) => new TextEncoder().encode(s);
    const storage = await ct.openIndexedDbStorage({ team: "idb", agent: "a" });
    await storage.batch([
      { type: "put", key: "out/2", value: enc("2") },
      { type: "put", key: "out/1", value: enc("1") },
      { type: "put", key: "doc/x", value: enc("x") },
    ]);
    await storage.close();
    const again = await ct.openIndexedDbStorage({ team: "idb", agent: "a" });
    const keys = (await again.scan("out/")).map(([k]) => k);
    const value = new TextDecoder().decode(await again.get("doc/x"));
    // A batch far beyond the origin's quota (set small below) is refused whole, typed.
    let code = "";
    try {
      await again.batch([{ type: "put", key: "big", value: new Uint8Array(8 * 1024 * 1024) }]);
    } catch (e) {
      code = (e as { code?: string }).code ?? String(e);
    }
    const big = await again.get("big");
    return { keys, value, code, big: big === undefined };
  });
  expect(result).toEqual({ keys: ["out/1", "out/2"], value: "x", code: "STORAGE_FULL", big: true });
});

test.beforeEach(async ({ page }, testInfo) => {
  if (!testInfo.title.startsWith("IndexedDbStorage")) return;
  // A small quota for this origin, so a real QuotaExceededError can be met.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: `http://${room.host}`, quotaSize: 1024 * 1024 });
});
