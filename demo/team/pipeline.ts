/**
 * The demo team's sales pipeline, rule-based (no model, no network), as behaviours any agent
 * runs on its `Team` wherever it lives (Node, a worker, a browser tab):
 *
 *   sales ──deal.closed──▶ contract ──call legal.review──▶ legal
 *                             └──contract.generated──▶ billing (a consumer group) ──invoice.issued
 *   compliance: a durable consumer of everything (an audit trail per deal)
 *   analytics:  a projection of the stream into live counters
 *
 * Exactly one invoice per deal, whatever crashes or redeliveries happen: the invoice is
 * written with `setIf(…, 0, …)` (of racing members exactly one wins) and every derived event
 * has an id made from the deal, so publishing it again is a duplicate the room drops.
 * Isomorphic: imports only the public client API.
 */
import { CrosstalkError, type Json, type StoredEvent, type Team } from "../../client/index.ts";

/** Where an agent runs, shown on the page's picture of the team. */
export type Runtime = "node" | "worker" | "browser";

export const ROLES = ["sales", "contract", "legal", "billing", "compliance", "analytics"] as const;
export type Role = (typeof ROLES)[number];

/** Legal refuses deals at or over this amount (so refusals are visible). */
export const APPROVAL_LIMIT = 90_000;
const CONTRACT_CONSUMER = "contract";
const COMPLIANCE_CONSUMER = "compliance";
const BILLING_GROUP = "billing";
/** Analytics buckets, ms. */
export const BUCKET_MS = 10_000;

/**
 * A deal in shared state. Each agent writes only its own field (sales the deal, contract
 * `contract`, billing `invoice`): the deal write and the event race to other agents, and a
 * field two agents wrote concurrently would converge on either value.
 */
export type Deal = { customer: string; amount: number; closedAt: number; contract?: string; invoice?: string };

/** Where a deal stands, from the fields its agents wrote. */
export const stageOf = (d: Partial<Deal>): string =>
  d.invoice ? "invoiced" : d.contract === "refused" ? "refused" : d.contract ? "contracted" : "closed";
export type Contract = {
  customer: string;
  amount: number;
  status: "active" | "refused";
  netDays: number;
  reviewedBy: string;
  reviewMs: number;
  reason?: string;
};
export type Invoice = { customer: string; amount: number; dueDays: number; issuedBy: string; closedAt: number };
export type Audit = { steps: string[]; complete: boolean };
export type Bucket = { t: number; deals: number; contracts: number; refused: number; invoices: number; lat: number[] };

export type Verdict = { approved: boolean; reason: string };

export type AgentOptions = {
  runs: Runtime;
  /** Legal: decides a review (default: the rule, after a short think). A human decides in the page. */
  decide?: (deal: { dealId: string; customer: string; amount: number }) => Promise<Verdict>;
  /** Billing: how long issuing an invoice takes, ms (default 300–1000, so leases are visible). */
  invoiceMs?: () => number;
  /** Called when something the agent cannot retry fails (shown by the page). */
  onError?: (error: unknown) => void;
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const between = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo));

/** Fresh, readable deal ids: `D-` + time + random. */
export const newDealId = (): string =>
  `D-${Date.now().toString(36).slice(-5)}${Math.random().toString(36).slice(2, 5)}`.toUpperCase();

/** Sales' check: a customer with an active contract gets no new deal. */
export function activeContractOf(team: Team, customer: string): string | undefined {
  for (const [dealId, c] of team.state<Contract>("contracts").entries())
    if (c.customer === customer && c.status === "active") return dealId;
  return undefined;
}

/**
 * Closes a deal as sales: refuses (CONFLICT) a customer with an active contract, else records
 * the deal and publishes `deal.closed`. The publish waits in the outbox while offline.
 */
export async function closeDeal(
  team: Team,
  deal: { customer: string; amount: number; dealId?: string },
): Promise<{ dealId: string; seq: number }> {
  const customer = deal.customer.trim();
  if (!customer) throw new CrosstalkError("INVALID_ARGUMENT", "a deal needs a customer");
  if (!Number.isFinite(deal.amount) || deal.amount <= 0)
    throw new CrosstalkError("INVALID_ARGUMENT", "a deal needs a positive amount");
  const active = activeContractOf(team, customer);
  if (active) throw new CrosstalkError("CONFLICT", `${customer} already has an active contract (${active})`);
  const dealId = deal.dealId ?? newDealId();
  const closedAt = team.now();
  team.state<Deal>("deals").update(dealId, { customer, amount: deal.amount, closedAt });
  const ack = await team.publish("deal.closed", { dealId, customer, amount: deal.amount, closedAt }, { key: dealId });
  return { dealId, seq: ack.seq };
}

const CUSTOMERS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Wonka", "Soylent"];
/** A made-up deal for the generator and bursts: a customer never seen before, amounts 5k–100k. */
export const randomDeal = (): { customer: string; amount: number } => ({
  customer: `${CUSTOMERS[between(0, CUSTOMERS.length)]} ${Math.random().toString(36).slice(2, 6)}`,
  amount: between(5, 100) * 1000,
});

type DealClosed = { dealId: string; customer: string; amount: number; closedAt: number };
type ContractGenerated = DealClosed & { netDays: number };

/** Starts `role`'s behaviour on `team`; returns a function that stops it. */
export function runRole(team: Team, role: Role, options: AgentOptions): () => void {
  const stops: (() => void)[] = [];
  const report = (error: unknown) => options.onError?.(error);
  const status: Record<string, Json> = { runs: options.runs, pipeline: role };
  const setStatus = (extra: Record<string, Json>) => {
    try {
      team.setStatus({ ...status, ...extra });
    } catch (error) {
      report(error);
    }
  };
  setStatus({});

  switch (role) {
    case "sales": {
      // The generator: deals at a rate the page sets (`sales.rate`); bursts on demand.
      let perMinute = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const tick = () => {
        if (perMinute <= 0) return;
        closeDeal(team, randomDeal()).catch(report);
        timer = setTimeout(tick, 60_000 / perMinute);
      };
      stops.push(() => clearTimeout(timer));
      stops.push(
        team.handle("sales.close", async (input) => {
          const { customer, amount } = (input ?? {}) as { customer?: unknown; amount?: unknown };
          return closeDeal(team, { customer: String(customer ?? ""), amount: Number(amount) });
        }),
        team.handle("sales.burst", async (input) => {
          const n = Math.min(Math.max(Math.floor(Number((input as { n?: unknown })?.n) || 0), 1), 200);
          const deals = await Promise.all(Array.from({ length: n }, () => closeDeal(team, randomDeal())));
          return { dealIds: deals.map((d) => d.dealId) };
        }),
        team.handle("sales.rate", (input) => {
          perMinute = Math.min(Math.max(Number((input as { perMinute?: unknown })?.perMinute) || 0, 0), 600);
          clearTimeout(timer);
          setStatus({ perMinute });
          if (perMinute > 0) timer = setTimeout(tick, 60_000 / perMinute);
          return { perMinute };
        }),
      );
      break;
    }

    case "contract": {
      const sub = team.subscribe(
        "deal.closed",
        async (event) => {
          const deal = event.data as DealClosed;
          const trace = { correlationId: event.correlationId, causationId: event.id };
          const started = Date.now();
          setStatus({ working: deal.dealId });
          // Legal may be slow, refuse, or be down: a failure here is retried by redelivery.
          const verdict = await team.call<Verdict & { by: string }>({ role: "legal" }, "legal.review", deal, {
            ...trace,
            timeoutMs: 20_000,
            idempotencyKey: `review-${deal.dealId}`,
            retries: 3,
          });
          const reviewMs = Date.now() - started;
          const contract: Contract = {
            customer: deal.customer,
            amount: deal.amount,
            status: verdict.approved ? "active" : "refused",
            netDays: deal.amount >= 50_000 ? 45 : 30,
            reviewedBy: verdict.by,
            reviewMs,
            ...(verdict.approved ? {} : { reason: verdict.reason }),
          };
          team.state<Contract>("contracts").set(deal.dealId, contract);
          team.state<Deal>("deals").update(deal.dealId, { contract: verdict.approved ? "active" : "refused" });
          const review = { by: verdict.by, ms: reviewMs, outcome: verdict.approved ? "approved" : "refused" };
          if (verdict.approved)
            await team.publish(
              "contract.generated",
              { ...deal, netDays: contract.netDays, review },
              { ...trace, id: `contract-${deal.dealId}`, key: deal.dealId },
            );
          else
            await team.publish(
              "contract.refused",
              { ...deal, reason: verdict.reason, review },
              { ...trace, id: `refused-${deal.dealId}`, key: deal.dealId },
            );
          setStatus({});
        },
        { consumer: CONTRACT_CONSUMER, from: "start", maxDeliver: 20, retryDelayMs: 500 },
      );
      stops.push(() => sub.unsubscribe());
      break;
    }

    case "legal": {
      const decide =
        options.decide ??
        (async (deal: { amount: number }) => {
          await sleep(between(150, 900));
          return deal.amount >= APPROVAL_LIMIT
            ? { approved: false, reason: `over the approval limit of ${APPROVAL_LIMIT}` }
            : { approved: true, reason: "standard terms" };
        });
      stops.push(
        team.handle("legal.review", async (input) => {
          const deal = input as DealClosed;
          setStatus({ working: deal.dealId });
          try {
            return { ...(await decide(deal)), by: team.agent };
          } finally {
            setStatus({});
          }
        }),
      );
      break;
    }

    case "billing": {
      const invoiceMs = options.invoiceMs ?? (() => between(300, 1000));
      const holding = new Set<string>();
      const sub = team.subscribe(
        "contract.generated",
        async (event) => {
          const deal = event.data as ContractGenerated;
          holding.add(deal.dealId);
          setStatus({ holding: [...holding] });
          try {
            const terms = await contractOf(team, deal.dealId);
            await sleep(invoiceMs());
            const invoices = team.state<Invoice>("invoices");
            const invoice: Invoice = {
              customer: deal.customer,
              amount: deal.amount,
              dueDays: terms.netDays,
              issuedBy: team.agent,
              closedAt: deal.closedAt,
            };
            let issued = invoice;
            try {
              await invoices.setIf(deal.dealId, 0, invoice);
              team.state<Deal>("deals").update(deal.dealId, { invoice: "issued" });
            } catch (error) {
              // Another member issued it first (a redelivery raced a slow member): publish theirs.
              if (!(error instanceof CrosstalkError) || error.code !== "CONFLICT") throw error;
              issued = (await waitFor(() => invoices.get(deal.dealId))) ?? invoice;
            }
            await team.publish(
              "invoice.issued",
              { dealId: deal.dealId, ...issued },
              {
                correlationId: event.correlationId,
                causationId: event.id,
                id: `invoice-${deal.dealId}`,
                key: deal.dealId,
              },
            );
          } finally {
            holding.delete(deal.dealId);
            setStatus({ holding: [...holding] });
          }
        },
        { group: BILLING_GROUP, from: "start", ackWaitMs: 8_000, maxAckPending: 2, maxDeliver: 20 },
      );
      stops.push(() => sub.unsubscribe());
      break;
    }

    case "compliance": {
      const audit = team.state<Audit>("audit");
      const sub = team.subscribe(
        ">",
        (event) => {
          const dealId = dealOf(event);
          if (!dealId) return;
          const step = `#${event.seq} ${event.type} by ${event.source}`;
          audit.update(dealId, (current) => {
            const steps = current?.steps ?? [];
            if (steps.includes(step)) return current as Audit;
            return {
              steps: [...steps, step],
              complete: event.type === "invoice.issued" || event.type === "contract.refused" || !!current?.complete,
            };
          });
        },
        { consumer: COMPLIANCE_CONSUMER, from: "start" },
      );
      stops.push(() => sub.unsubscribe());
      break;
    }

    case "analytics": {
      const projection = team.project<Bucket>({
        name: "analytics",
        into: team.state<Bucket>("analytics"),
        types: ["deal.closed", "contract.generated", "contract.refused", "invoice.issued"],
        key: (e) => `b-${Math.floor(e.ts / BUCKET_MS) * BUCKET_MS}`,
        reduce: (bucket, e) => {
          const b: Bucket = bucket
            ? { ...bucket, lat: [...bucket.lat] }
            : { t: Math.floor(e.ts / BUCKET_MS) * BUCKET_MS, deals: 0, contracts: 0, refused: 0, invoices: 0, lat: [] };
          if (e.type === "deal.closed") b.deals++;
          else if (e.type === "contract.generated") b.contracts++;
          else if (e.type === "contract.refused") b.refused++;
          else if (e.type === "invoice.issued") {
            b.invoices++;
            const closedAt = (e.data as { closedAt?: unknown }).closedAt;
            if (typeof closedAt === "number" && b.lat.length < 500) b.lat.push(Math.max(0, e.ts - closedAt));
          }
          return b;
        },
      });
      projection.running.catch(report);
      stops.push(() => void projection.stop().catch(() => {}));
      break;
    }
  }
  return () => {
    for (const stop of stops) stop();
  };
}

/** The deal an event belongs to, if any. */
export function dealOf(event: Pick<StoredEvent, "data" | "key">): string | undefined {
  if (event.key) return event.key;
  const data = event.data as { dealId?: unknown } | null;
  return typeof data?.dealId === "string" ? data.dealId : undefined;
}

/** The contract's payment terms from shared state, waiting briefly for this replica to catch up. */
async function contractOf(team: Team, dealId: string): Promise<Contract> {
  const contracts = team.state<Contract>("contracts");
  await contracts.ready;
  const found = await waitFor(() => contracts.get(dealId));
  if (!found) throw new CrosstalkError("NOT_FOUND", `no contract for ${dealId} in shared state yet`);
  return found;
}

async function waitFor<T>(get: () => T | undefined, ms = 5_000): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = get();
    if (value !== undefined || Date.now() > deadline) return value;
    await sleep(50);
  }
}
