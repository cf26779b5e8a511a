/**
 * The shipped alerts (ops/prometheus/alerts.yml) and dashboard (ops/grafana/crosstalk.json)
 * against a real Prometheus scraping a real `partykit dev` room: one team per condition
 * (poison events, a stalled consumer, a dead role, failing and slow calls, a flapping agent,
 * a growing inbox, a room near its memory and connection limits, a sudden burst), each alert
 * read back through Prometheus's own `/api/v1/alerts`, and a healthy deal → contract →
 * invoice pipeline running alongside that must stay quiet. `promtool` checks and unit-tests
 * the rules. About two minutes: the rate-change alert needs a minute and a half of baseline.
 *
 * Needs Debian's `prometheus` package (2.42; CI installs it). Skipped, saying so, only when
 * it is not installed.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Json, traceFrom } from "../client/index.ts";
import { eventually, type RoomServer, sleep, startRoom } from "./harness.ts";
import { type Alert, type PrometheusServer, startPrometheus, which } from "./prometheus.ts";

const ROOT = join(import.meta.dirname, "..");
const RULES = join(ROOT, "ops/prometheus/alerts.yml");
const RULE_TESTS = join(ROOT, "ops/prometheus/alerts.test.yml");
const DASHBOARD = join(ROOT, "ops/grafana/crosstalk.json");

const installed = which("prometheus") !== null && which("promtool") !== null;
if (!installed && process.env.CROSSTALK_CI) {
  // CI installs the package (.ci/run): a skip there would hide that the alerts went untested.
  throw new Error("CI must run the Prometheus tests, but `prometheus`/`promtool` are not installed");
}
if (!installed) {
  console.warn(
    "test/prometheus.test.ts SKIPPED: `prometheus` and `promtool` are not installed " +
      "(apt-get install -y --no-install-recommends prometheus)",
  );
}

const promtool = (...args: string[]) => spawnSync("promtool", args, { encoding: "utf8", cwd: ROOT });

describe.skipIf(!installed)("shipped Prometheus rules (promtool)", () => {
  it("pass promtool check rules", () => {
    const out = promtool("check", "rules", RULES);
    expect(out.stdout + out.stderr).toContain("SUCCESS");
    expect(out.status).toBe(0);
  });

  it("pass their unit tests (promtool test rules): each fires after its `for:` and stays quiet when healthy", () => {
    const out = promtool("test", "rules", RULE_TESTS);
    expect(out.stdout + out.stderr).toContain("SUCCESS");
    expect(out.status).toBe(0);
  });
});

/** The value of a query's first sample (NaN when it has none). */
const first = (res: Awaited<ReturnType<PrometheusServer["query"]>>): number =>
  Number((res.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? Number.NaN);

/** Every PromQL expression of the dashboard, with Grafana's variables given values Prometheus accepts. */
function dashboardQueries(team: string): { title: string; expr: string }[] {
  const board = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
    panels: { title: string; type: string; targets?: { expr: string }[]; panels?: unknown[] }[];
  };
  return board.panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      title: p.title,
      expr: t.expr
        .replaceAll("$__rate_interval", "1m")
        .replaceAll("$__range", "5m")
        .replaceAll("$team", team)
        .replaceAll("$job", ".*"),
    })),
  );
}

describe.skipIf(!installed)("alerts against a real room and a real Prometheus", () => {
  let room: RoomServer;
  let prom: PrometheusServer;
  const stops: (() => void)[] = [];
  const teams = {
    healthy: "",
    dlq: "",
    lag: "",
    noRoute: "",
    errors: "",
    flap: "",
    inbox: "",
    memory: "",
    conns: "",
    spike: "",
  };

  beforeAll(async () => {
    room = await startRoom({
      // Small limits so one team can come near them; the healthy team stays far below.
      vars: { CROSSTALK_MEMORY_LIMIT_BYTES: "1000000", CROSSTALK_MAX_CONNECTIONS_PER_AGENT: "4" },
    });
    for (const name of Object.keys(teams) as (keyof typeof teams)[]) teams[name] = room.team(name);
    const targets = await Promise.all(
      Object.values(teams).map(async (team) => ({
        team,
        host: room.host,
        token: await room.token("prometheus", "admin", { team, ttl: "1h" }),
      })),
    );
    prom = await startPrometheus({ targets, ruleFiles: [RULES] });
  });

  afterAll(async () => {
    for (const stop of stops) stop();
    await prom?.[Symbol.asyncDispose]();
    await room?.[Symbol.asyncDispose]();
  });

  /** Runs `tick` every `ms` until the test ends. */
  const every = (ms: number, tick: () => Promise<unknown>) => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout>;
    const loop = () => {
      if (stopped) return;
      void tick()
        .catch(() => {})
        .finally(() => {
          if (!stopped) timer = setTimeout(loop, ms);
        });
    };
    loop();
    const stop = () => {
      stopped = true;
      clearTimeout(timer);
    };
    stops.push(stop);
    return stop;
  };

  /** The demo pipeline, steady: sales closes a deal, a clerk has legal draft the contract, billing invoices it. */
  async function healthyPipeline(team: string) {
    const sales = await room.agent("sales-1", { team, role: "sales" });
    const legal = await room.agent("legal-1", { team, role: "legal" });
    const clerk = await room.agent("clerk-1", { team, role: "clerk" });
    const billing = await room.agent("billing-1", { team, role: "billing" });
    legal.handle("draft", (input) => ({ contract: `C-${(input as { deal: number }).deal}` }));
    billing.handle("notify", () => {});
    await clerk.subscribe(
      "deal.*",
      async (e) => {
        const contract = await clerk.call({ role: "legal" }, "draft", e.data, traceFrom(e));
        await clerk.publish("contract.signed", contract as Json, traceFrom(e));
        await clerk.send("billing-1", "notify", { contract }, traceFrom(e));
      },
      { consumer: "clerk", from: "start" },
    ).ready;
    await billing.subscribe(
      "contract.*",
      async (e) => {
        await billing.publish("invoice.issued", e.data as Json, traceFrom(e));
      },
      { consumer: "billing", from: "start" },
    ).ready;
    await eventually(() => expect(sales.agents().find((a) => a.agent === "legal-1")?.methods).toEqual(["draft"]));
    let deal = 0;
    every(400, () => sales.publish("deal.closed", { deal: ++deal }));
    return { sales };
  }

  it("each alert goes pending or firing for its condition, and a healthy pipeline stays quiet", {
    timeout: 300_000,
  }, async () => {
    const { sales } = await healthyPipeline(teams.healthy);

    // Rate change: a steady 2 events/s now, a burst once the baseline exists (below).
    const chatty = await room.agent("chatty", { team: teams.spike });
    const stopSteady = every(500, () => chatty.publish("tick", {}));

    // Dead letters: a consumer whose handler always fails on one poison event.
    const auditor = await room.agent("auditor", { team: teams.dlq });
    await auditor.subscribe(
      "deal.*",
      (e) => {
        if (e.type === "deal.poison") throw new Error("cannot audit this");
      },
      { consumer: "auditor", from: "start", maxDeliver: 2 },
    ).ready;
    await auditor.publish("deal.closed", {});
    await auditor.publish("deal.poison", {});

    // A stalled durable consumer: its handler never returns, and events keep waiting.
    const stuck = await room.agent("stuck", { team: teams.lag });
    await stuck.subscribe("job.*", () => new Promise<never>(() => {}), { consumer: "stuck", from: "start" }).ready;
    for (let i = 0; i < 5; i++) await stuck.publish("job.queued", { i });

    // A dead role: calls to `legal` while no agent of that role is connected.
    const caller = await room.agent("caller", { team: teams.noRoute, role: "sales" });
    every(300, () => caller.call({ role: "legal" }, "draft", {}, { retries: 0, timeoutMs: 1000 }));

    // Failing and slow calls.
    const flaky = await room.agent("flaky", { team: teams.errors, role: "legal" });
    const asker = await room.agent("asker", { team: teams.errors, role: "sales" });
    flaky.handle("risky", () => {
      throw new Error("always fails");
    });
    flaky.handle("slow", async () => {
      await sleep(3000);
      return "late";
    });
    await eventually(() => expect(asker.agents().find((a) => a.agent === "flaky")?.methods).toHaveLength(2));
    every(300, () => asker.call("flaky", "risky", {}, { retries: 0 }));
    every(500, () => asker.call("flaky", "slow", {}, { retries: 0 }));

    // A flapping agent: connects and leaves over and over (spread out: Prometheus's rate()
    // sees only what happens after its first scrape of the series).
    every(400, async () => {
      const flappy = await room.agent("flappy", { team: teams.flap });
      await flappy.close();
    });

    // A growing inbox: messages keep coming for an agent that never connects.
    const sender = await room.agent("sender", { team: teams.inbox });
    every(500, () => sender.send("ghost", "notify", { at: Date.now() }));

    // Memory: loaded documents above 80% of the room's (here 1 MB) limit.
    const hoarder = await room.agent("hoarder", { team: teams.memory });
    const blobs = hoarder.state("blobs");
    await blobs.ready;
    for (let i = 0; i < 4; i++) blobs.set(`b${i}`, { blob: "x".repeat(250_000) });

    // Connections: one agent id holding all 4 sockets it may (its agent socket and 3 stock Yjs providers).
    const hog = await room.agent("hog", { team: teams.conns });
    const hogToken = await room.token("hog", "agent", { team: teams.conns });
    const yjs: InstanceType<typeof room.WebSocket>[] = [];
    for (let i = 0; i < 3; i++) {
      const ws = new room.WebSocket(
        `ws://${room.host}/parties/main/${teams.conns}?doc=state/x&_pk=p${i}&token=${hogToken}`,
      );
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      yjs.push(ws);
    }
    stops.push(() => {
      for (const ws of yjs) ws.close();
    });
    expect(hog).toBeDefined();

    // The burst, once the spike stream has a baseline: its 1m rate recorded for a while.
    await eventually(
      async () => {
        const r = await prom.query(`count_over_time(crosstalk:stream_events:rate1m{team="${teams.spike}"}[2m])`);
        const n = Number((r.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0);
        expect(n).toBeGreaterThanOrEqual(12);
      },
      { timeoutMs: 150_000, intervalMs: 1000 },
    );
    stopSteady();
    every(25, () => chatty.publish("tick", {}));

    const expected: [alert: string, team: string, labels: Record<string, string>][] = [
      ["CrosstalkDeadLetters", teams.dlq, { stream: "main.dlq" }],
      ["CrosstalkConsumerFallingBehind", teams.lag, { consumer: "stuck", kind: "durable" }],
      ["CrosstalkNoLiveMember", teams.noRoute, { role: "legal" }],
      ["CrosstalkRpcErrorRate", teams.errors, { method: "risky" }],
      ["CrosstalkRpcSlow", teams.errors, { method: "slow" }],
      ["CrosstalkAgentFlapping", teams.flap, { agent: "flappy" }],
      ["CrosstalkInboxGrowing", teams.inbox, { agent: "ghost" }],
      ["CrosstalkRoomMemoryHigh", teams.memory, {}],
      ["CrosstalkAgentConnectionsHigh", teams.conns, { agent: "hog" }],
      ["CrosstalkStreamRateChanged", teams.spike, { stream: "main" }],
    ];
    const noisy: Alert[] = [];
    const matches = (a: Alert, [name, team, labels]: (typeof expected)[number]) =>
      a.labels.alertname === name &&
      a.labels.team === team &&
      Object.entries(labels).every(([k, v]) => a.labels[k] === v);
    // Each alert as last seen active (a firing sighting is kept): conditions are not all
    // active at one instant (a late scrape marks a target's series stale for a moment).
    const seen = new Map<string, Alert>();
    await eventually(
      async () => {
        const now = await prom.alerts();
        noisy.push(...now.filter((a) => a.labels.team === teams.healthy));
        for (const e of expected) {
          const alert = now.find((a) => matches(a, e));
          if (alert && seen.get(e[0])?.state !== "firing") seen.set(e[0], alert);
        }
        const missing = expected.filter(([name]) => !seen.has(name));
        expect(missing.map(([name, team]) => `${name} for ${team}`)).toEqual([]);
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    ).catch(async (error: unknown) => {
      // What Prometheus saw, to tell a wrong rule from a condition that never happened.
      for (const expr of [
        "min_over_time(up[5m])",
        "crosstalk:stream_events:rate1m",
        "avg_over_time(crosstalk:stream_events:rate1m[1h] offset 30s)",
        "crosstalk_dlq_depth",
        "crosstalk_consumer_lag",
        "crosstalk_agent_sockets",
      ]) {
        const r = (await prom.query(expr)).data?.result as { metric: Record<string, string>; value: unknown }[];
        console.error(expr, JSON.stringify(r?.map((x) => [x.metric.team, x.metric.stream ?? x.metric.agent, x.value])));
      }
      throw error;
    });
    for (const [name] of expected) {
      const alert = seen.get(name) as Alert;
      expect(["pending", "firing"]).toContain(alert.state);
      expect(alert.annotations.runbook?.length).toBeGreaterThan(40);
      expect(alert.annotations.runbook_url).toMatch(/^docs\/RUNBOOK\.md#crosstalk/);
    }
    // No `for:`: a dead letter fires at once.
    expect(seen.get("CrosstalkDeadLetters")?.state).toBe("firing");

    // Quiet is only worth something if the healthy team was scraped and busy all along.
    const up = await prom.query(`min_over_time(up{team="${teams.healthy}"}[5m])`);
    expect(first(up)).toBe(1);
    const busy = await prom.query(`sum(crosstalk_events_published_total{team="${teams.healthy}"})`);
    expect(first(busy)).toBeGreaterThan(100);
    const calls = await prom.query(`sum(crosstalk_rpc_calls_total{team="${teams.healthy}",outcome="ok"})`);
    expect(first(calls)).toBeGreaterThan(50);
    expect(noisy.map((a) => a.labels.alertname)).toEqual([]);
    expect((await prom.alerts()).filter((a) => a.labels.team === teams.healthy)).toEqual([]);
    expect(sales).toBeDefined();
  });

  it("the Grafana dashboard names only metrics the room exports, and each of its queries runs", async () => {
    // What the room exports: every `# TYPE` of its /metrics (a counter is declared before its
    // first increment), a histogram's series, and the recording rules shipped with the alerts.
    const text = await (await room.fetch(`/parties/main/${teams.healthy}/metrics`)).text();
    const exported = new Set<string>();
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exported.add(name as string);
      if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(`${name}${s}`);
    }
    for (const [, name] of readFileSync(RULES, "utf8").matchAll(/- record: (\S+)/g)) exported.add(name as string);
    const queries = dashboardQueries(teams.healthy);
    expect(queries.length).toBeGreaterThan(10);
    for (const { title, expr } of queries) {
      for (const name of expr.match(/\bcrosstalk[_:][a-z0-9_:]+/g) ?? []) {
        expect(exported.has(name), `${title}: ${name} is not exported`).toBe(true);
      }
      const res = await prom.query(expr);
      expect(res.status, `${title}: ${expr}: ${res.error}`).toBe("success");
    }
  });
});
