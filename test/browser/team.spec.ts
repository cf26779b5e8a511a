/**
 * The live team page in Chromium against a real room (the repo's partykit.json: room, page and
 * the legal worker) with the demo team running for real: Node agents (demo/team/node.ts) and
 * legal inside workerd. Two browser contexts watch and take part; the checks read what the
 * pages show and what the room stored (history read by a Node agent), never a stub.
 */
import { join, resolve } from "node:path";
import { type BrowserContext, expect, type Page, test, type WebSocketRoute } from "@playwright/test";
import type { StoredEvent } from "../../client/index.ts";
import { type DemoTeam, startDemoTeam } from "../../demo/team/node.ts";
import { type RoomServer, startRoom } from "../harness.ts";

const ROOT = resolve(import.meta.dirname, "../..");

let room: RoomServer;
let demo: DemoTeam;
let team: string;

test.beforeAll(async () => {
  room = await startRoom({ config: join(ROOT, "partykit.json"), vars: { CROSSTALK_DEV: "1" } });
  team = room.team("pipeline");
  demo = await startDemoTeam({
    host: room.host,
    team,
    token: (agent, role) => room.token(agent, role, { team }),
    restartAfterMs: 6000,
    // Long enough that a billing member visibly holds its leases when the crash comes.
    invoiceMs: () => 3000 + Math.floor(Math.random() * 1000),
  });
});
test.afterAll(async () => {
  await demo?.[Symbol.asyncDispose]();
  await room?.[Symbol.asyncDispose]();
});

const byTestId = (page: Page, id: string, attrs = "") => page.locator(`[data-testid="${id}"]${attrs}`);
const row = (page: Page, table: string, key: string) =>
  page.locator(`[data-testid="table-${table}"] [data-testid="row"][data-key="${key}"]`);

async function open(context: BrowserContext, agent: string): Promise<Page> {
  const page = await context.newPage();
  page.on("pageerror", (e) => {
    throw e;
  });
  await page.goto(`http://${room.host}/?team=${team}&agent=${agent}`);
  await expect(byTestId(page, "status")).toHaveText("online");
  return page;
}

async function closeDeal(page: Page, customer: string, amount = 20_000): Promise<string> {
  await byTestId(page, "close-customer").fill(customer);
  await byTestId(page, "close-amount").fill(String(amount));
  await byTestId(page, "close-submit").click();
  await expect(byTestId(page, "close-result")).toHaveText(/closed as #\d+/);
  return ((await byTestId(page, "close-result").textContent()) ?? "").split(" ")[0] as string;
}

/** Everything the room stored on `main`, read by a Node agent of the team. */
async function history(): Promise<StoredEvent[]> {
  const reader = await room.agent(`reader-${Math.random().toString(36).slice(2, 7)}`, { team, role: "viewer" });
  try {
    const events: StoredEvent[] = [];
    for await (const e of reader.history()) events.push(e);
    return events;
  } finally {
    await reader.close();
  }
}

const invoicesOf = (events: StoredEvent[], dealId: string) =>
  events.filter((e) => e.type === "invoice.issued" && (e.data as { dealId?: string }).dealId === dealId);

test("a deal closed in one tab shows its contract and invoice in both, and its causal chain", async ({ browser }) => {
  const [a, b] = [await browser.newContext(), await browser.newContext()];
  const pageA = await open(a, "viewer-a");
  const pageB = await open(b, "viewer-b");

  await test.step("the team picture shows every agent where it runs", async () => {
    for (const page of [pageA, pageB]) {
      for (const agent of ["sales-1", "contract-1", "billing-1", "billing-2", "compliance-1", "analytics-1"])
        await expect(byTestId(page, "node", `[data-agent="${agent}"]`)).toHaveAttribute("data-runs", "node");
      await expect(byTestId(page, "node", '[data-agent="legal-worker"]')).toHaveAttribute("data-runs", "worker");
    }
  });

  const dealId = await closeDeal(pageA, "Initech one");
  await test.step("both tabs show the deal, its contract and its invoice (within 30 s)", async () => {
    for (const page of [pageA, pageB]) {
      await expect(row(page, "deals", dealId).locator('[data-field="stage"]')).toHaveText("invoiced", {
        timeout: 30_000,
      });
      await expect(row(page, "contracts", dealId).locator('[data-field="status"]')).toHaveText("active");
      await expect(row(page, "contracts", dealId).locator('[data-field="reviewedBy"]')).toHaveText("legal-worker");
      await expect(row(page, "invoices", dealId).locator('[data-field="issuedBy"]')).toHaveText(/^billing-[12]$/);
      await expect(row(page, "invoices", dealId).locator('[data-field="amount"]')).toHaveText("20,000");
    }
  });

  await test.step("clicking the invoice in the timeline shows deal → contract → invoice, and the legal call", async () => {
    await byTestId(pageB, "tl-row", `[data-type="invoice.issued"][data-deal="${dealId}"]`).getByRole("button").click();
    const trace = byTestId(pageB, "trace");
    const deal = trace.locator('[data-testid="trace-item"][data-type="deal.closed"]');
    await expect(deal).toHaveCount(1);
    // Nested: the contract under the deal, the invoice under the contract.
    const contract = deal.locator('[data-testid="trace-item"][data-type="contract.generated"]');
    await expect(contract).toHaveCount(1);
    await expect(contract.locator('[data-testid="trace-item"][data-type="invoice.issued"]')).toHaveCount(1);
    await expect(trace.locator('[data-testid="trace-item"][data-kind="call"][data-method="legal.review"]')).toHaveCount(
      1,
    );
  });

  expect(invoicesOf(await history(), dealId)).toHaveLength(1);
  await a.close();
  await b.close();
});

test("a billing tab cut off while two deals close: both complete once, both tabs agree", async ({ browser }) => {
  const [a, b] = [await browser.newContext(), await browser.newContext()];
  // Context b's sockets go through the test, which can cut them (setOffline does not cut WebSockets).
  let cut = false;
  const routes: WebSocketRoute[] = [];
  await b.routeWebSocket(/\/parties\/main\//, (ws) => {
    if (cut) return void ws.close();
    ws.connectToServer();
    routes.push(ws);
  });
  const pageA = await open(a, "viewer-c");
  const pageB = await open(b, "viewer-d");

  await byTestId(pageB, "join-role").selectOption("billing");
  await byTestId(pageB, "join-submit").click();
  await expect(byTestId(pageB, "joined-agent")).toHaveText("This tab is billing-d (billing).");
  await expect(byTestId(pageA, "node", '[data-agent="billing-d"]')).toHaveAttribute("data-runs", "browser");

  await test.step("b goes offline: every tab sees its billing agent go grey", async () => {
    cut = true;
    for (const ws of routes.splice(0)) await ws.close();
    await expect(byTestId(pageB, "status")).toHaveText("offline");
    await expect(byTestId(pageA, "node", '[data-agent="billing-d"]')).toHaveAttribute("data-state", "down");
  });

  const deals = [await closeDeal(pageA, "Hooli cut one"), await closeDeal(pageA, "Hooli cut two", 30_000)];
  for (const dealId of deals)
    await expect(row(pageA, "invoices", dealId).locator('[data-field="issuedBy"]')).toHaveText(/^billing-/, {
      timeout: 30_000,
    });

  await test.step("b comes back: it catches up and shows what a shows", async () => {
    cut = false;
    await expect(byTestId(pageB, "status")).toHaveText("online", { timeout: 30_000 });
    await expect(byTestId(pageA, "node", '[data-agent="billing-d"]')).toHaveAttribute("data-state", "up", {
      timeout: 30_000,
    });
    for (const dealId of deals) {
      await expect(row(pageB, "deals", dealId).locator('[data-field="stage"]')).toHaveText("invoiced");
      await expect(row(pageB, "invoices", dealId)).toHaveCount(1);
    }
    const snapshot = (page: Page) => page.evaluate(() => window.crosstalkDemo?.snapshot());
    await expect.poll(async () => JSON.stringify(await snapshot(pageB))).toBe(JSON.stringify(await snapshot(pageA)));
  });

  const events = await history();
  for (const dealId of deals) {
    expect(events.filter((e) => e.type === "deal.closed" && e.key === dealId)).toHaveLength(1);
    expect(events.filter((e) => e.type === "contract.generated" && e.key === dealId)).toHaveLength(1);
    expect(invoicesOf(events, dealId)).toHaveLength(1);
  }
  await a.close();
  await b.close();
});

test("with the worker's legal agent crashed, a tab joined as legal approves a contract by hand", async ({
  browser,
}) => {
  const context = await browser.newContext();
  const page = await open(context, "viewer-g");
  const operator = await room.agent("operator-g", { team, role: "viewer" });
  // Down for 30 s: long enough that the review can only go to the human.
  await operator.call("legal-worker", "demo.crash", { downMs: 30_000 });
  await expect(byTestId(page, "node", '[data-agent="legal-worker"]')).toHaveAttribute("data-state", "down");

  await byTestId(page, "join-role").selectOption("legal");
  await byTestId(page, "join-submit").click();
  await expect(byTestId(page, "joined-agent")).toHaveText("This tab is legal-g (legal).");
  const dealId = await closeDeal(page, "Tyrell by hand", 42_000);
  const review = byTestId(page, "review", `[data-deal="${dealId}"]`);
  await expect(review).toContainText("Tyrell by hand");
  await review.getByRole("button", { name: "Approve" }).click();
  await expect(row(page, "contracts", dealId).locator('[data-field="reviewedBy"]')).toHaveText("legal-g");
  await expect(row(page, "invoices", dealId)).toHaveCount(1, { timeout: 30_000 });
  await expect(byTestId(page, "node", '[data-agent="legal-worker"]')).toHaveAttribute("data-state", "up", {
    timeout: 45_000,
  });
  await byTestId(page, "leave-submit").click();
  await operator.close();
  await context.close();
});

test("taking this tab offline: its deal waits in the outbox, then goes out and completes", async ({ browser }) => {
  const context = await browser.newContext();
  const page = await open(context, "viewer-f");
  await byTestId(page, "offline-toggle").click();
  await expect(byTestId(page, "offline-toggle")).toHaveAttribute("aria-pressed", "true");
  await expect(byTestId(page, "status")).toHaveText("offline");

  await byTestId(page, "close-customer").fill("Offline Wonka");
  await byTestId(page, "close-submit").click();
  await expect(byTestId(page, "close-result")).toHaveText(/Queued in the outbox/);
  await expect(byTestId(page, "outbox-count")).toHaveText("1");

  await byTestId(page, "offline-toggle").click();
  await expect(byTestId(page, "status")).toHaveText("online", { timeout: 30_000 });
  await expect(byTestId(page, "outbox-count")).toHaveText("0");
  await expect(byTestId(page, "close-result")).toHaveText(/closed as #\d+/);
  const dealId = ((await byTestId(page, "close-result").textContent()) ?? "").split(" ")[0] as string;
  await expect(row(page, "invoices", dealId)).toHaveCount(1, { timeout: 30_000 });
  expect(invoicesOf(await history(), dealId)).toHaveLength(1);
  await context.close();
});

test("crashing the billing member that holds a lease: every invoice still exactly once", async ({
  browser,
}, testInfo) => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await open(context, "viewer-e");
  const watcher = await room.agent("watcher-e", { team, role: "viewer" });
  // What each billing member said it holds, as last seen while it was there.
  const holding = new Map<string, string[]>();
  watcher.on("agents", (agents) => {
    for (const a of agents) if (Array.isArray(a.status.holding)) holding.set(a.agent, a.status.holding as string[]);
  });
  const before = new Set((await history()).map((e) => e.key));

  await byTestId(page, "burst-n").fill("12");
  await byTestId(page, "burst-submit").click();
  await expect(byTestId(page, "burst-result")).toHaveText("12 deals closed by sales-1.");

  // A member that holds leases right now.
  let victim = "";
  await expect
    .poll(
      () => {
        victim = [...holding].find(([agent, deals]) => agent.startsWith("billing-") && deals.length > 0)?.[0] ?? "";
        return victim;
      },
      { timeout: 30_000, intervals: [20] },
    )
    .not.toBe("");

  await byTestId(page, "crash-agent").selectOption(victim);
  await byTestId(page, "crash-submit").click();
  await expect(byTestId(page, "crash-result")).toHaveText(new RegExp(`^${victim} crashed`));

  await test.step("the page shows the agent going down, the work moving, and the agent coming back", async () => {
    await expect(byTestId(page, "node", `[data-agent="${victim}"]`)).toHaveAttribute("data-state", "down");
    // The deals it held when it went down go to the other member.
    const held = holding.get(victim) ?? [];
    expect(held.length).toBeGreaterThan(0);
    // An artifact of every run (test-results/…); docs/demo-page.png in the README is one of them.
    const path = testInfo.outputPath("live-team-under-load.png");
    await page.screenshot({ fullPage: true, path });
    await testInfo.attach("live team page under load", { path, contentType: "image/png" });
    for (const dealId of held)
      await expect(row(page, "invoices", dealId).locator('[data-field="issuedBy"]')).toHaveText(
        new RegExp(`^(?!${victim}$)billing-`),
        { timeout: 30_000 },
      );
    await expect(byTestId(page, "node", `[data-agent="${victim}"]`)).toHaveAttribute("data-state", "up", {
      timeout: 30_000,
    });
  });

  await test.step("all twelve deals end in exactly one invoice", async () => {
    let burst: string[] = [];
    await expect
      .poll(
        async () => {
          const events = await history();
          burst = [...new Set(events.filter((e) => e.type === "deal.closed" && !before.has(e.key)).map((e) => e.key))]
            .filter((k): k is string => !!k)
            .sort();
          return burst.length === 12 && burst.every((d) => invoicesOf(events, d).length >= 1 || isRefused(events, d));
        },
        { timeout: 60_000 },
      )
      .toBe(true);
    const events = await history();
    for (const dealId of burst) expect(invoicesOf(events, dealId).length + (isRefused(events, dealId) ? 1 : 0)).toBe(1);
    await expect(byTestId(page, "count-invoices")).toHaveText(
      String(new Set(events.filter((e) => e.type === "invoice.issued").map((e) => e.key)).size),
    );
  });

  await watcher.close();
  await context.close();
});

const isRefused = (events: StoredEvent[], dealId: string) =>
  events.some((e) => e.type === "contract.refused" && e.key === dealId);
