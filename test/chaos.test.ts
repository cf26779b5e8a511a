/**
 * The five-agent pipeline under repeated connection cuts (the run that found the
 * double-approval defect): sales publishes deals → contract asks legal by an idempotent,
 * retried call → contract publishes `contract.generated` → a billing group of two issues
 * invoices. Every agent's socket is cut every 1–3 s throughout. Every approval must run
 * exactly once per deal, in five consecutive runs, and every deal must reach billing.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Team } from "../client/index.ts";
import { cuttableSocket, eventually, type RoomServer, startRoom } from "./harness.ts";

const DEALS = 600;
const RUNS = 5;

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

/** Cuts `cut()` every 1–3 s until `stop()`. */
function chaos(cut: () => void): { stop: () => void } {
  let timer: ReturnType<typeof setTimeout>;
  const next = () => {
    timer = setTimeout(
      () => {
        cut();
        next();
      },
      1000 + Math.random() * 2000,
    );
  };
  next();
  return { stop: () => clearTimeout(timer) };
}

async function pipelineRun(run: number): Promise<{ approvals: Map<string, number>; invoiced: Set<string> }> {
  const team = room.team(`chaos${run}`);
  const approvals = new Map<string, number>();
  const invoiced = new Set<string>();
  const nets = new Map<string, ReturnType<typeof cuttableSocket>>();
  const agents: Team[] = [];
  const join = async (agent: string, role: string) => {
    const net = cuttableSocket();
    nets.set(agent, net);
    const t = await room.agent(agent, { team, role, WebSocket: net.WebSocket });
    agents.push(t);
    return t;
  };

  const legal = await join("legal-1", "legal");
  legal.handle("approve", async (input) => {
    const deal = (input as { deal: string }).deal;
    approvals.set(deal, (approvals.get(deal) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, Math.random() * 3));
    return { deal, approved: true };
  });

  const contract = await join("contract-1", "contract");
  const contracts = contract.subscribe(
    "deal.closed",
    async (event) => {
      const deal = (event.data as { deal: string }).deal;
      await contract.call(
        { role: "legal" },
        "approve",
        { deal },
        {
          idempotencyKey: `approve-${deal}`,
          retries: 30,
          timeoutMs: 60_000,
        },
      );
      await contract.publish("contract.generated", { deal }, { id: `contract-${deal}` });
    },
    { from: "start", consumer: "contracts", maxDeliver: 1000, retryDelayMs: 50 },
  );

  for (const id of ["billing-1", "billing-2"]) {
    const billing = await join(id, "billing");
    const sub = billing.subscribe(
      "contract.generated",
      (event) => {
        invoiced.add((event.data as { deal: string }).deal);
      },
      { group: "billing", from: "start", maxDeliver: 1000 },
    );
    await sub.ready;
  }
  await contracts.ready;
  await eventually(() => expect(contract.agents().some((a) => a.methods.includes("approve"))).toBe(true));

  const sales = await join("sales-1", "sales");
  const cutters = [...nets.values()].map((net) => chaos(net.cut));
  try {
    await Promise.all(
      Array.from({ length: DEALS }, (_, n) => sales.publish("deal.closed", { deal: `D${n}` }, { id: `deal-${n}` })),
    );
    await eventually(
      () => expect({ approved: approvals.size, invoiced: invoiced.size }).toEqual({ approved: DEALS, invoiced: DEALS }),
      { timeoutMs: 120_000, intervalMs: 100 },
    );
  } finally {
    for (const c of cutters) c.stop();
    await Promise.all(agents.map((a) => a.close()));
  }
  return { approvals, invoiced };
}

it(
  `runs every approval exactly once in ${RUNS} consecutive runs of ${DEALS} deals under cuts every 1–3 s`,
  async () => {
    for (let run = 1; run <= RUNS; run++) {
      const { approvals, invoiced } = await pipelineRun(run);
      const twice = [...approvals].filter(([, n]) => n !== 1).map(([deal, n]) => `${deal}×${n}`);
      expect({ run, twice }).toEqual({ run, twice: [] });
      expect(approvals.size).toBe(DEALS);
      expect(invoiced.size).toBe(DEALS);
    }
  },
  RUNS * 150_000,
);
