/**
 * The demo page in Chromium against a real room (the repo's partykit.json: room + demo), with
 * a Node agent on the other side. Everything the page shows must come over the wire.
 */
import { join, resolve } from "node:path";
import { expect, type Page, test } from "@playwright/test";
import type { StoredEvent } from "../../client/index.ts";
import { type RoomServer, startRoom } from "../harness.ts";

const ROOT = resolve(import.meta.dirname, "../..");

let room: RoomServer;
test.beforeAll(async () => {
  // Development mode: the page gets its token from the room's dev endpoint, as with `npm start`.
  room = await startRoom({ config: join(ROOT, "partykit.json"), vars: { CROSSTALK_DEV: "1" } });
});
test.afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const byTestId = (page: Page, id: string, attrs = "") => page.locator(`[data-testid="${id}"]${attrs}`);

test("the demo page is a live view of its team", async ({ page }, testInfo) => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));

  const team = room.team("demo");
  const viewer = "viewer-e2e";
  await page.goto(`http://${room.host}/?team=${team}&agent=${viewer}#inspector`);

  await test.step("the page is online and in its own roster", async () => {
    await expect(byTestId(page, "status")).toHaveText("online");
    await expect(byTestId(page, "team-name")).toHaveText(team);
    const me = byTestId(page, "roster-row", `[data-agent="${viewer}"]`);
    await expect(me).toBeVisible();
    await expect(me).toContainText("viewer");
    expect(await page.evaluate(() => window.crosstalkTeam?.agent)).toBe(viewer);
  });

  const sales = await room.agent("sales-1", { team, role: "sales" });

  await test.step("a Node agent joins and appears in the roster with its status and methods", async () => {
    sales.handle("quote", () => ({ price: 1 }));
    sales.setStatus({ mood: "busy" });
    const row = byTestId(page, "roster-row", '[data-agent="sales-1"]');
    await expect(row).toContainText("sales");
    await expect(row).toContainText("quote");
    await expect(row).toContainText('mood="busy"');
    await expect(byTestId(page, "roster-count")).toHaveText("2");
  });

  await test.step("an event from the Node agent shows in the feed with seq and source", async () => {
    const ack = await sales.publish("deal.closed", { dealId: "D1", amount: 50_000 });
    const row = byTestId(page, "feed-row", `[data-seq="${ack.seq}"]`);
    await expect(row.locator('[data-testid="feed-seq"]')).toHaveText(`#${ack.seq}`);
    await expect(row.locator('[data-testid="feed-type"]')).toHaveText("deal.closed");
    await expect(row.locator('[data-testid="feed-source"]')).toHaveText("sales-1");
    await expect(row.locator('[data-testid="feed-data"]')).toHaveText('{"dealId":"D1","amount":50000}');
  });

  await test.step("the page's publish form reaches the Node agent, stamped with the page's id", async () => {
    const seen: StoredEvent[] = [];
    const sub = sales.subscribe("note.*", (e) => void seen.push(e), { from: "start" });
    await sub.ready;
    await byTestId(page, "publish-type").fill("note.added");
    await byTestId(page, "publish-data").fill('{"text": "from the page"}');
    await byTestId(page, "publish-submit").click();
    await expect(byTestId(page, "publish-result")).toHaveText(/Stored as #\d+/);
    await expect
      .poll(() => seen.map((e) => ({ type: e.type, source: e.source, data: e.data })))
      .toEqual([{ type: "note.added", source: viewer, data: { text: "from the page" } }]);
    // The page sees its own event in the feed too.
    await expect(byTestId(page, "feed-row", `[data-seq="${seen[0]?.seq}"]`)).toContainText(viewer);
    sub.unsubscribe();
  });

  await test.step("shared state flows both ways through the deals table", async () => {
    const deals = sales.state("deals");
    await deals.ready;
    deals.set("D1", { stage: "negotiation", amount: 50_000 });
    const row = byTestId(page, "deal-row", '[data-key="D1"]');
    await expect(row.locator('[data-field="stage"]')).toHaveText('"negotiation"');
    await expect(row.locator('[data-field="amount"]')).toHaveText("50000");

    await byTestId(page, "deal-id").fill("D1");
    await byTestId(page, "deal-field").fill("owner");
    await byTestId(page, "deal-value").fill('"viewer-e2e"');
    await byTestId(page, "deal-submit").click();
    await expect.poll(() => deals.get("D1")).toEqual({ stage: "negotiation", amount: 50_000, owner: "viewer-e2e" });
    await expect(row.locator('[data-field="owner"]')).toHaveText('"viewer-e2e"');
  });

  await test.step("a leaving agent drops out of the roster", async () => {
    await sales.close();
    await expect(byTestId(page, "roster-row", '[data-agent="sales-1"]')).toHaveCount(0);
    await expect(byTestId(page, "roster-count")).toHaveText("1");
  });

  await testInfo.attach("demo page", { body: await page.screenshot({ fullPage: true }), contentType: "image/png" });
  expect(errors).toEqual([]);
});
