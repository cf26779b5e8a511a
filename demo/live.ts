/**
 * The page's "Live team" tab: the demo team's sales pipeline as it runs — the agents as a
 * picture with the messages between them, the shared state as tables, the analytics as
 * charts (uPlot), the event timeline with each event's causal chain (`team.trace`), and the
 * controls to take part (close deals, join as an agent) and to break and heal the team
 * (take this tab offline, crash an agent, burst deals). Everything shown comes over the wire
 * through the public client API; values are written with `textContent`, never as HTML.
 */
import uPlot from "uplot";
// Bundled into /dist/app.css (index.html links it): the page loads nothing from elsewhere.
import "uplot/dist/uPlot.min.css";
import {
  type AgentInfo,
  type ConnectOptions,
  connect,
  type Entity,
  type EntityMeta,
  type StoredEvent,
  type Team,
  type TraceNode,
} from "../client/index.ts";
import { $, el } from "./dom.ts";
import { HostedAgent } from "./team/host.ts";
import {
  type Bucket,
  closeDeal,
  type Deal,
  dealOf,
  type Role,
  type Runtime,
  stageOf,
  type Verdict,
} from "./team/pipeline.ts";

declare global {
  interface Window {
    /** The live view's state, for tests and for poking around in the console. */
    crosstalkDemo?: {
      snapshot(): Record<string, Record<string, Entity>>;
      joined(): Team | null;
      gate: Gate;
    };
  }
}

// --- this tab's network switch ---------------------------------------------------------

/** A socket that fails at once, as when the network is down: partysocket keeps retrying. */
class DeadSocket extends EventTarget {
  readyState = 0;
  binaryType = "arraybuffer";
  bufferedAmount = 0;
  protocol = "";
  extensions = "";
  constructor(readonly url: string) {
    super();
    setTimeout(() => {
      this.readyState = 3;
      this.dispatchEvent(new Event("error"));
      this.dispatchEvent(new CloseEvent("close", { code: 1006, reason: "offline", wasClean: false }));
    }, 0);
  }
  send(): void {}
  close(): void {}
}

/**
 * Takes every connection of this tab offline and back: open sockets are closed and new ones
 * fail until it is switched back (a WebSocket constructor given to `connect`).
 */
export class Gate {
  offline = false;
  readonly #sockets = new Set<WebSocket>();
  readonly Socket: typeof WebSocket;

  constructor() {
    const gate = this;
    // A plain constructor function: `new` returns the real socket, or a dead one while offline.
    function GatedSocket(url: string | URL, protocols?: string | string[]): WebSocket {
      if (gate.offline) return new DeadSocket(String(url)) as unknown as WebSocket;
      const ws = new WebSocket(url, protocols);
      gate.#sockets.add(ws);
      ws.addEventListener("close", () => gate.#sockets.delete(ws));
      return ws;
    }
    this.Socket = GatedSocket as unknown as typeof WebSocket;
  }

  set(offline: boolean): void {
    this.offline = offline;
    if (!offline) return;
    for (const ws of this.#sockets) ws.close(4000, "this tab went offline");
    this.#sockets.clear();
  }
}

// --- small DOM helpers -----------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag: string, attrs: Record<string, string | number>, text?: string): SVGElement => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
};

const clock = (ms: number) => new Date(ms).toLocaleTimeString();
const money = (n: unknown) => (typeof n === "number" ? n.toLocaleString("en-US") : "");
const errorText = (e: unknown) =>
  `${typeof e === "object" && e && "code" in e ? `${String(e.code)}: ` : ""}${e instanceof Error ? e.message : String(e)}`;

function result(testid: string, text: string, ok: boolean): void {
  const out = $(testid);
  out.textContent = text;
  out.dataset.ok = String(ok);
}

/** Runs `fn` at most every `ms`, trailing call included. */
function throttle(fn: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => {
      timer = undefined;
      last = Date.now();
      fn();
    }, wait);
  };
}

// --- the picture of the team ------------------------------------------------------------

const STAGES: Role[] = ["sales", "contract", "legal", "billing", "compliance", "analytics"];
const STAGE_TOP: Record<Role, number> = {
  sales: 60,
  contract: 60,
  legal: 170,
  billing: 60,
  compliance: 170,
  analytics: 170,
};
type Known = { agent: string; role: string; runs: Runtime; up: boolean; since: number; status: AgentInfo["status"] };

function runsOf(a: AgentInfo): Runtime {
  const runs = a.status.runs;
  return runs === "node" || runs === "worker" || runs === "browser" ? runs : "browser";
}

class Graph {
  readonly known = new Map<string, Known>();
  #positions = new Map<string, { x: number; y: number }>();
  readonly #svg = $("graph") as unknown as SVGSVGElement;
  readonly #edges = svg("g", { class: "edge-layer" });
  readonly #nodes = svg("g", { class: "node-layer" });

  constructor() {
    this.#svg.append(this.#edges, this.#nodes);
  }

  roster(agents: AgentInfo[], now: number): void {
    const live = new Set(agents.map((a) => a.agent));
    for (const a of agents) {
      const before = this.known.get(a.agent);
      this.known.set(a.agent, {
        agent: a.agent,
        role: a.role,
        runs: runsOf(a),
        up: true,
        since: before?.up ? before.since : now,
        status: a.status,
      });
    }
    for (const k of this.known.values()) if (!live.has(k.agent) && k.up) Object.assign(k, { up: false, since: now });
    this.draw();
  }

  draw(): void {
    const members = [...this.known.values()].filter((k) => STAGES.includes(k.role as Role));
    const watchers = [...this.known.values()].filter((k) => !STAGES.includes(k.role as Role) && k.up);
    const colW = 900 / STAGES.length;
    this.#positions = new Map();
    const nodes: SVGElement[] = [];
    for (const [i, stage] of STAGES.entries()) {
      const x = colW * i + colW / 2;
      // Legal, compliance and analytics sit lower, so the main line's edges do not cross them.
      const top = STAGE_TOP[stage];
      nodes.push(svg("text", { x, y: top - 34, class: "stage", "text-anchor": "middle" }, stage));
      const inStage = members.filter((k) => k.role === stage).sort((a, b) => a.agent.localeCompare(b.agent));
      for (const [j, k] of inStage.entries()) {
        const y = top + j * 58;
        this.#positions.set(k.agent, { x, y });
        nodes.push(this.#node(k, x, y));
      }
    }
    nodes.push(
      svg(
        "text",
        { x: 450, y: 302, class: "watchers", "text-anchor": "middle" },
        `${watchers.length} viewer tab${watchers.length === 1 ? "" : "s"} watching`,
      ),
    );
    this.#nodes.replaceChildren(...nodes);
  }

  #node(k: Known, x: number, y: number): SVGElement {
    const g = svg("g", {
      class: `node ${k.up ? "up" : "down"} runs-${k.runs}`,
      "data-testid": "node",
      "data-agent": k.agent,
      "data-state": k.up ? "up" : "down",
      "data-runs": k.runs,
      transform: `translate(${x} ${y})`,
    });
    const shape =
      k.runs === "worker"
        ? svg("rect", { x: -13, y: -13, width: 26, height: 26, transform: "rotate(45)" })
        : k.runs === "browser"
          ? svg("rect", { x: -13, y: -13, width: 26, height: 26, rx: 3 })
          : svg("circle", { r: 15 });
    const holding = Array.isArray(k.status.holding) ? k.status.holding.length : 0;
    const working = typeof k.status.working === "string" ? k.status.working : "";
    const busy = holding > 0 || working !== "";
    if (busy) g.classList.add("busy");
    const detail = !k.up ? `down since ${clock(k.since)}` : holding ? `holds ${holding}` : working || k.runs;
    g.append(
      svg("title", {}, `${k.agent} (${k.role}, runs in ${k.runs}) — ${k.up ? "online" : "offline"}`),
      shape,
      svg("text", { y: 30, "text-anchor": "middle", class: "name" }, k.agent),
      svg("text", { y: 43, "text-anchor": "middle", class: "detail" }, detail),
    );
    return g;
  }

  /** A message from `from` to `to`: a line that flashes, labelled with what and how long. */
  edge(from: string, to: string, label: string, outcome: "ok" | "refused" | "error"): void {
    const a = this.#positions.get(from);
    const b = this.#positions.get(to);
    if (!a || !b || from === to) return;
    const line = svg("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: `edge ${outcome}` });
    const dot = svg("circle", { r: 4, class: `pulse ${outcome}` });
    dot.append(svg("animateMotion", { dur: "0.8s", fill: "freeze", path: `M${a.x},${a.y} L${b.x},${b.y}` }));
    const text = svg(
      "text",
      { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 6, "text-anchor": "middle", class: `edge-label ${outcome}` },
      label,
    );
    this.#edges.append(line, dot, text);
    setTimeout(() => {
      line.remove();
      dot.remove();
      text.remove();
    }, 2500);
    while (this.#edges.childElementCount > 90) this.#edges.firstElementChild?.remove();
    const log = $("edge-log");
    log.prepend(
      el("li", `${clock(Date.now())} ${from} → ${to}: ${label}`, {
        "data-testid": "edge",
        "data-from": from,
        "data-to": to,
        "data-outcome": outcome,
      }),
    );
    while (log.childElementCount > 6) log.lastElementChild?.remove();
  }
}

// --- tables of shared state -------------------------------------------------------------

type Column = { field: string; label: string; show?: (v: unknown, entity: Entity) => string };
const TABLES: Record<"deals" | "contracts" | "invoices", Column[]> = {
  deals: [
    { field: "customer", label: "Customer" },
    { field: "amount", label: "Amount", show: money },
    { field: "stage", label: "Stage", show: (_, deal) => stageOf(deal as Partial<Deal>) },
  ],
  contracts: [
    { field: "status", label: "Status" },
    { field: "netDays", label: "Net days" },
    { field: "reviewedBy", label: "Reviewed by" },
  ],
  invoices: [
    { field: "amount", label: "Amount", show: money },
    { field: "dueDays", label: "Due (days)" },
    { field: "issuedBy", label: "Issued by" },
  ],
};
const TABLE_ROWS = 15;

function renderTable(team: Team, name: keyof typeof TABLES): void {
  const ns = team.state(name);
  const columns = TABLES[name];
  const table = $(`table-${name}`);
  const head = table.querySelector("thead tr") as HTMLTableRowElement;
  if (!head.childElementCount)
    head.append(
      ...["Deal", ...columns.map((c) => c.label), "Changed"].map((label) => el("th", label, { scope: "col" })),
    );
  const rows = ns
    .entries()
    .map(([key, value]) => ({ key, value, meta: ns.meta(key) as EntityMeta | undefined }))
    .sort((a, b) => (b.meta?.updatedAt ?? 0) - (a.meta?.updatedAt ?? 0))
    .slice(0, TABLE_ROWS);
  const body = table.querySelector("tbody") as HTMLTableSectionElement;
  body.replaceChildren(
    ...rows.map(({ key, value, meta }) => {
      const tr = el("tr", undefined, { "data-testid": "row", "data-key": key });
      tr.append(el("th", key, { scope: "row", class: "mono" }));
      for (const c of columns) {
        const v = value[c.field];
        tr.append(el("td", c.show ? c.show(v, value) : v === undefined ? "" : String(v), { "data-field": c.field }));
      }
      tr.append(
        el("td", meta ? `${meta.updatedBy} · ${clock(meta.updatedAt)}` : "", {
          class: "small",
          "data-field": "changed",
        }),
      );
      return tr;
    }),
  );
  $(`count-${name}`).textContent = String(ns.keys().length);
}

// --- charts -----------------------------------------------------------------------------

const CHART_BUCKETS = 30;

function chart(testid: string, series: { label: string; stroke: string }[]): uPlot {
  const host = $(testid);
  const width = () => Math.max(220, Math.min(host.clientWidth || 300, 520));
  const plot = new uPlot(
    {
      width: width(),
      height: 140,
      legend: { show: true, live: false },
      cursor: { show: false },
      // The last five minutes, also while there is only one point.
      scales: {
        x: {
          time: true,
          range: (u) => {
            const xs = u.data[0] ?? [];
            const last = Number(xs[xs.length - 1] ?? Date.now() / 1000);
            return [last - 300, last + 5];
          },
        },
      },
      axes: [{ stroke: "#7b8494" }, { stroke: "#7b8494", size: 44 }],
      series: [{}, ...series.map((s) => ({ ...s, width: 2, points: { show: false } }))],
    },
    [[], ...series.map(() => [])],
    host,
  );
  new ResizeObserver(() => plot.setSize({ width: width(), height: 140 })).observe(host);
  return plot;
}

const p99 = (values: number[]): number | null => {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? null;
};

// --- the trace --------------------------------------------------------------------------

function traceList(nodes: TraceNode[], start: number): HTMLOListElement {
  const ol = el("ol");
  for (const n of nodes) {
    const d = n.detail as Record<string, unknown>;
    const text =
      n.kind === "event"
        ? `#${String(d.seq)} ${String(d.type)} by ${String(d.source)}`
        : `${n.kind} ${String(d.method)}: ${String(d.from)} → ${String(d.to ?? "")} ${d.outcome ? `(${String(d.outcome)})` : ""}`;
    const li = el("li", undefined, {
      "data-testid": "trace-item",
      "data-kind": n.kind,
      ...(n.kind === "event" ? { "data-type": String(d.type) } : { "data-method": String(d.method) }),
    });
    li.append(el("span", text, { class: "mono" }), el("span", ` +${n.ts - start} ms`, { class: "small" }));
    if (n.children.length) li.append(traceList(n.children, start));
    ol.append(li);
  }
  return ol;
}

// --- the view ---------------------------------------------------------------------------

export type LiveOptions = {
  /** The page's own agent (a viewer). */
  team: Team;
  gate: Gate;
  /** Connection options for an agent this tab joins as (host, team, token per agent/role). */
  base: (agent: string, role: string) => Omit<ConnectOptions, "agent" | "role" | "WebSocket">;
};

export function startLive({ team, gate, base }: LiveOptions): void {
  const graph = new Graph();
  let joined: HostedAgent | null = null;
  const reviews = new Map<
    string,
    { deal: { dealId: string; customer: string; amount: number }; done: (v: Verdict) => void }
  >();

  window.crosstalkDemo = {
    snapshot: () => ({
      deals: team.state("deals").toJSON(),
      contracts: team.state("contracts").toJSON(),
      invoices: team.state("invoices").toJSON(),
    }),
    joined: () => joined?.team ?? null,
    gate,
  };

  // The roster: the picture and the crash menu.
  const onAgents = (agents: AgentInfo[]) => {
    graph.roster(agents, Date.now());
    const select = $<HTMLSelectElement>("crash-agent");
    const choice = select.value;
    const crashable = [...graph.known.values()]
      .filter((k) => (k.runs === "node" || k.runs === "worker") && STAGES.includes(k.role as Role))
      .sort((a, b) => a.agent.localeCompare(b.agent));
    select.replaceChildren(
      ...crashable.map((k) =>
        el("option", `${k.agent} (${k.runs}${k.up ? "" : ", down"})`, {
          value: k.agent,
          ...(k.up ? {} : { disabled: "" }),
        }),
      ),
    );
    if (crashable.some((k) => k.agent === choice)) select.value = choice;
  };
  team.on("agents", onAgents);
  onAgents(team.agents());

  // Tables.
  for (const name of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
    const ns = team.state(name);
    const redraw = throttle(() => renderTable(team, name), 200);
    ns.observe(redraw);
    ns.ready.then(redraw, () => {});
  }

  // Charts.
  const throughput = chart("chart-throughput", [
    { label: "deals", stroke: "#3451d1" },
    { label: "invoices", stroke: "#1f8a4c" },
  ]);
  const latency = chart("chart-latency", [{ label: "p99 ms", stroke: "#b7791f" }]);
  const lagNames = ["contract", "compliance", "billing"];
  const lag = chart(
    "chart-lag",
    lagNames.map((label, i) => ({ label, stroke: ["#3451d1", "#8a3fd1", "#1f8a4c"][i] as string })),
  );
  const analytics = team.state<Bucket>("analytics");
  const drawAnalytics = throttle(() => {
    const buckets = analytics
      .entries()
      .filter(([key]) => key.startsWith("b-"))
      .map(([, b]) => b)
      .sort((a, b) => a.t - b.t);
    const totals = buckets.reduce(
      (t, b) => ({ deals: t.deals + b.deals, invoices: t.invoices + b.invoices, refused: t.refused + b.refused }),
      { deals: 0, invoices: 0, refused: 0 },
    );
    $("totals").textContent = `${totals.deals} deals · ${totals.invoices} invoices · ${totals.refused} refused`;
    const recent = buckets.slice(-CHART_BUCKETS);
    const xs = recent.map((b) => b.t / 1000);
    throughput.setData([xs, recent.map((b) => b.deals), recent.map((b) => b.invoices)]);
    latency.setData([xs, recent.map((b) => p99(b.lat))]);
  }, 500);
  analytics.observe(drawAnalytics);
  analytics.ready.then(drawAnalytics, () => {});
  const lagData: number[][] = [[], ...lagNames.map(() => [])];
  setInterval(async () => {
    if (team.status !== "online") return;
    try {
      const { consumers } = await team.consumers("main");
      lagData[0]?.push(Date.now() / 1000);
      for (const [i, name] of lagNames.entries())
        lagData[i + 1]?.push(consumers.find((c) => c.name === name)?.lag ?? 0);
      for (const series of lagData) if (series.length > 150) series.shift();
      lag.setData(lagData as uPlot.AlignedData);
    } catch {
      // Offline or not allowed: the chart just pauses.
    }
  }, 2000);

  // Timeline and edges.
  const seen = new Map<string, { source: string; ts: number }>();
  let timelineCount = 0;
  team.subscribe(
    ">",
    (event) => {
      seen.set(event.id, { source: event.source, ts: event.ts });
      if (seen.size > 5000) seen.delete(seen.keys().next().value as string);
      appendTimeline(event);
      const cause = event.causationId ? seen.get(event.causationId) : undefined;
      const fresh = Date.now() - event.ts < 15_000;
      if (!fresh) return;
      const review = (event.data as { review?: { by?: unknown; ms?: unknown; outcome?: unknown } })?.review;
      if (review && typeof review.by === "string")
        graph.edge(
          event.source,
          review.by,
          `legal.review ${String(review.ms)} ms ${String(review.outcome)}`,
          review.outcome === "approved" ? "ok" : "refused",
        );
      if (cause)
        graph.edge(
          cause.source,
          event.source,
          `${event.type} ${event.ts - cause.ts} ms`,
          event.type.endsWith("refused") ? "refused" : "ok",
        );
    },
    { from: "start" },
  );

  function appendTimeline(event: StoredEvent): void {
    const list = $("timeline");
    const deal = dealOf(event) ?? "";
    const li = el("li", undefined, {
      "data-testid": "tl-row",
      "data-seq": String(event.seq),
      "data-type": event.type,
      "data-deal": deal,
    });
    const button = el("button", undefined, { type: "button", "aria-label": `Causal chain of event ${event.seq}` });
    button.append(
      el("span", `#${event.seq}`, { class: "seq mono" }),
      el("span", event.type, { class: "type mono" }),
      el("span", event.source, { class: "source mono" }),
      el("span", deal, { class: "mono small" }),
      el("time", clock(event.ts), { datetime: new Date(event.ts).toISOString(), class: "small" }),
    );
    button.addEventListener("click", () => void showTrace(event, li));
    li.append(button);
    list.prepend(li);
    while (list.childElementCount > 300) list.lastElementChild?.remove();
    $("timeline-count").textContent = String(++timelineCount);
  }

  async function showTrace(event: StoredEvent, row: HTMLElement): Promise<void> {
    for (const r of document.querySelectorAll('[data-testid="tl-row"][aria-current]'))
      r.removeAttribute("aria-current");
    row.setAttribute("aria-current", "true");
    const panel = $("trace");
    const body = el("div", "Loading…", { class: "small" });
    panel.replaceChildren(el("h3", `Causal chain of #${event.seq} ${event.type}`, { id: "trace-title" }), body);
    try {
      const tree = await team.trace(event.correlationId ?? event.id);
      body.replaceWith(traceList(tree, tree[0]?.ts ?? event.ts));
    } catch (error) {
      body.textContent = errorText(error);
    }
  }

  // Close a deal from this tab (its publish waits in the outbox while offline).
  $<HTMLFormElement>("close-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const customer = (form.elements.namedItem("customer") as HTMLInputElement).value;
    const amount = Number((form.elements.namedItem("amount") as HTMLInputElement).value);
    result("close-result", "Closing…", true);
    const closing = closeDeal(team, { customer, amount });
    closing.then(
      ({ dealId, seq }) => result("close-result", `${dealId} closed as #${seq}.`, true),
      (error) => result("close-result", errorText(error), false),
    );
    // While offline the publish waits: say so rather than "Closing…" forever.
    setTimeout(() => {
      if ($("close-result").textContent === "Closing…" && team.status !== "online")
        result("close-result", "Queued in the outbox: it goes out when this tab is back online.", true);
    }, 300);
  });

  $<HTMLFormElement>("burst-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const n = Number($<HTMLInputElement>("burst-n").value);
    result("burst-result", `Asking sales for ${n} deals…`, true);
    try {
      const out = await team.call<{ dealIds: string[] }>("sales-1", "sales.burst", { n }, { timeoutMs: 20_000 });
      result("burst-result", `${out.dealIds.length} deals closed by sales-1.`, true);
    } catch (error) {
      result("burst-result", errorText(error), false);
    }
  });
  $("rate-submit").addEventListener("click", async () => {
    const perMinute = Number($<HTMLInputElement>("rate").value);
    try {
      const out = await team.call<{ perMinute: number }>("sales-1", "sales.rate", { perMinute }, { timeoutMs: 5000 });
      result("burst-result", `sales-1 now closes ${out.perMinute} deals a minute.`, true);
    } catch (error) {
      result("burst-result", errorText(error), false);
    }
  });

  // Crash an agent: it drops, the room hands its work to others, it comes back.
  $("crash-submit").addEventListener("click", async () => {
    const agent = $<HTMLSelectElement>("crash-agent").value;
    if (!agent) return;
    try {
      const out = await team.call<{ restartInMs: number }>(agent, "demo.crash", {}, { timeoutMs: 5000 });
      result("crash-result", `${agent} crashed; back in ~${Math.round(out.restartInMs / 1000)} s.`, true);
    } catch (error) {
      result("crash-result", errorText(error), false);
    }
  });

  // This tab offline and back; the outbox count shows what waits.
  const toggle = $<HTMLButtonElement>("offline-toggle");
  toggle.addEventListener("click", () => {
    gate.set(!gate.offline);
    toggle.setAttribute("aria-pressed", String(gate.offline));
    toggle.textContent = gate.offline ? "Bring this tab back online" : "Take this tab offline";
  });
  setInterval(() => {
    $("outbox-count").textContent = String(team.pendingPublishes + (joined?.team?.pendingPublishes ?? 0));
  }, 250);

  // Join as an agent of the team; a human legal decides reviews here.
  const renderReviews = () => {
    const list = $("review-list");
    list.replaceChildren(
      ...[...reviews.values()].map(({ deal, done }) => {
        const li = el("li", `${deal.dealId}: ${deal.customer}, ${money(deal.amount)} `, {
          "data-testid": "review",
          "data-deal": deal.dealId,
        });
        const approve = el("button", "Approve", { type: "button" });
        const refuse = el("button", "Refuse", { type: "button", class: "secondary" });
        approve.addEventListener("click", () => done({ approved: true, reason: "approved by hand" }));
        refuse.addEventListener("click", () => done({ approved: false, reason: "refused by hand" }));
        li.append(approve, " ", refuse);
        return li;
      }),
    );
    $("reviews").hidden = !(joined?.options.role === "legal");
  };
  const leave = $<HTMLButtonElement>("leave-submit");
  const joinButton = $<HTMLButtonElement>("join-submit");
  $<HTMLFormElement>("join-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (joined) return;
    const role = $<HTMLSelectElement>("join-role").value as Role;
    const agent = `${role}-${team.agent.replace(/^viewer-/, "").slice(0, 20)}`;
    joined = new HostedAgent({
      connect,
      base: base(agent, role),
      WebSocket: gate.Socket,
      agent,
      role,
      agentOptions: {
        runs: "browser",
        onError: (error) => result("joined-agent", errorText(error), false),
        decide: (deal) =>
          new Promise<Verdict>((resolve) => {
            reviews.set(deal.dealId, {
              deal,
              done: (v) => {
                reviews.delete(deal.dealId);
                renderReviews();
                resolve(v);
              },
            });
            renderReviews();
          }),
      },
    });
    joinButton.disabled = true;
    result("joined-agent", `Joining as ${agent}…`, true);
    try {
      await joined.start();
      result("joined-agent", `This tab is ${agent} (${role}).`, true);
      leave.disabled = false;
      renderReviews();
    } catch (error) {
      joined = null;
      joinButton.disabled = false;
      result("joined-agent", errorText(error), false);
    }
  });
  leave.addEventListener("click", async () => {
    const agent = joined;
    joined = null;
    leave.disabled = true;
    for (const r of reviews.values()) r.done({ approved: false, reason: "the reviewer left" });
    await agent?.stop();
    joinButton.disabled = false;
    result("joined-agent", "", true);
    renderReviews();
  });

  // A customer name to start with.
  $<HTMLInputElement>("close-customer").value ||= `Visitor ${Math.random().toString(36).slice(2, 6)}`;
}
