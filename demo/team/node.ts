/**
 * The demo team's Node agents (sales, contract, two billing members, compliance, analytics),
 * each on its own connection, and the wake-up call for the legal agent that runs inside a
 * worker (demo/legal-party.ts). `npm start` runs this file; the browser tests call
 * `startDemoTeam` against their own room.
 *
 *   node --import tsx demo/team/node.ts --host 127.0.0.1:1999 --team acme
 *
 * Run directly, it gets tokens from the room's development endpoint (`CROSSTALK_DEV=1`).
 */
import WebSocket from "ws";
import { connect } from "../../client/node.ts";
import { HostedAgent } from "./host.ts";
import type { Role } from "./pipeline.ts";

export const NODE_AGENTS: { agent: string; role: Role }[] = [
  { agent: "sales-1", role: "sales" },
  { agent: "contract-1", role: "contract" },
  { agent: "billing-1", role: "billing" },
  { agent: "billing-2", role: "billing" },
  { agent: "compliance-1", role: "compliance" },
  { agent: "analytics-1", role: "analytics" },
];

export type DemoTeam = {
  agents: HostedAgent[];
  /** Crashes one Node agent (it comes back after `restartAfterMs`). */
  crash(agent: string): void;
  [Symbol.asyncDispose](): Promise<void>;
};

export type DemoTeamOptions = {
  host: string;
  team: string;
  token: (agent: string, role: string) => Promise<string>;
  restartAfterMs?: number;
  /** Billing: how long issuing an invoice takes (see `AgentOptions.invoiceMs`). */
  invoiceMs?: () => number;
  log?: (line: string) => void;
};

/** Starts the Node agents and wakes the worker's legal agent; resolves once all are online. */
export async function startDemoTeam(options: DemoTeamOptions): Promise<DemoTeam> {
  const log = options.log ?? (() => {});
  const agents = NODE_AGENTS.map(
    ({ agent, role }) =>
      new HostedAgent({
        connect,
        base: { host: options.host, team: options.team, token: () => options.token(agent, role) },
        WebSocket,
        agent,
        role,
        agentOptions: {
          runs: "node",
          ...(options.invoiceMs ? { invoiceMs: options.invoiceMs } : {}),
          onError: (e) => log(`${agent}: ${e instanceof Error ? e.message : String(e)}`),
        },
        ...(options.restartAfterMs !== undefined ? { restartAfterMs: options.restartAfterMs } : {}),
        onChange: (state) => log(`${agent} ${state}`),
      }),
  );
  await Promise.all(agents.map((a) => a.start()));
  await wakeLegal(options.host, options.team);
  return {
    agents,
    crash: (agent) => agents.find((a) => a.agent === agent)?.crash(),
    async [Symbol.asyncDispose]() {
      await Promise.all(agents.map((a) => a.stop()));
    },
  };
}

/** Asks the `legal` party (a worker) to connect its agent to `team`. */
export async function wakeLegal(host: string, team: string): Promise<void> {
  const res = await fetch(`http://${host}/parties/legal/${encodeURIComponent(team)}`, { method: "POST" });
  const body = (await res.json().catch(() => ({}))) as { ok?: boolean; error?: string };
  if (!res.ok || !body.ok) throw new Error(`the legal worker did not start: ${body.error ?? res.status}`);
}

async function devToken(host: string, team: string, agent: string, role: string): Promise<string> {
  const q = new URLSearchParams({ agent, role });
  const res = await fetch(`http://${host}/parties/main/${encodeURIComponent(team)}/dev/token?${q}`);
  if (!res.ok) throw new Error(`no development token (${res.status}): is the room in development mode?`);
  return ((await res.json()) as { token: string }).token;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, fallback: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
  };
  const host = arg("host", "127.0.0.1:1999");
  const team = arg("team", "acme");
  const demo = await startDemoTeam({
    host,
    team,
    token: (agent, role) => devToken(host, team, agent, role),
    log: (line) => console.log(`[team ${team}] ${line}`),
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      void demo[Symbol.asyncDispose]().finally(() => process.exit(0));
    });
}
