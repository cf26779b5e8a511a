import { defineConfig, devices } from "@playwright/test";

/**
 * Browser tests: the demo page in the system Chromium against a real `partykit dev`, which
 * each spec starts itself through test/harness.ts. Playwright never downloads a browser here.
 */
export default defineConfig({
  testDir: "test/browser",
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  // Starting partykit dev (workerd + the demo bundle) can take a while on a busy machine.
  timeout: 180_000,
  expect: { timeout: 20_000 },
  reporter: [["list"], ["json", { outputFile: "reports/playwright.json" }]],
  use: {
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
  },
  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        launchOptions: {
          executablePath: "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
          ],
        },
      },
    },
  ],
});
