/**
 * A real Prometheus for tests (Debian's `prometheus` package, 2.42): its own process on a free
 * port with a temporary config and data directory, never the system service the package may
 * install. Used by test/prometheus.test.ts to scrape a real room and read alerts through
 * Prometheus's own HTTP API.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, sleep } from "./harness.ts";

/** Where `name` is on PATH, or null. */
export function which(name: string): string | null {
  const found = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  return found.status === 0 ? found.stdout.trim() : null;
}

/** One scrape target: a team's room, with the bearer token its `/metrics` needs. */
export type ScrapeTarget = { team: string; host: string; token: string };

export type Alert = { labels: Record<string, string>; annotations: Record<string, string>; state: string };

export type PrometheusServer = {
  url: string;
  query(expr: string): Promise<{ status: string; data?: { result: unknown[] }; error?: string }>;
  alerts(): Promise<Alert[]>;
  output(): string;
  [Symbol.asyncDispose](): Promise<void>;
};

/**
 * Starts Prometheus scraping each team's `/metrics` every second and evaluating `ruleFiles`
 * every second, and waits until it is ready.
 */
export async function startPrometheus(options: {
  targets: ScrapeTarget[];
  ruleFiles: string[];
}): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), "crosstalk-prom-"));
  // One job per team: each room's /metrics needs a token for that team.
  const jobs = options.targets.map((t) => ({
    job_name: t.team,
    metrics_path: `/parties/main/${t.team}/metrics`,
    authorization: { type: "Bearer", credentials: t.token },
    static_configs: [{ targets: [t.host], labels: { team: t.team } }],
  }));
  const config = {
    global: { scrape_interval: "1s", evaluation_interval: "1s", scrape_timeout: "1s" },
    rule_files: options.ruleFiles,
    scrape_configs: jobs,
  };
  // JSON is YAML: no YAML library needed to write the config.
  writeFileSync(join(dir, "prometheus.yml"), JSON.stringify(config, null, 2));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let log = "";
  const child: ChildProcess = spawn(
    "prometheus",
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const keep = (d: Buffer) => {
    log = (log + d.toString()).slice(-50_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/-/ready`)).ok) break;
    } catch {
      // Not listening yet.
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus did not become ready:\n${log}`);
    }
    await sleep(100);
  }
  return {
    url,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      return (await res.json()) as Awaited<ReturnType<PrometheusServer["query"]>>;
    },
    async alerts() {
      const body = (await (await fetch(`${url}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } };
      return body.data.alerts;
    },
    output: () => log,
    [Symbol.asyncDispose]: stop,
  };
}
