/**
 * The demo page: a live view of one team, as a "viewer" agent, through the isomorphic client.
 * Two tabs: "Live team" (live.ts: the demo pipeline, joinable, breakable) and "Inspector"
 * (this file: roster, raw feed, a state table and two raw forms).
 * Query parameters: `?team=acme&agent=viewer-xyz` (both optional), `&token=…` (a signed
 * token; without one the page asks the room's development endpoint, which exists only with
 * `CROSSTALK_DEV=1`, as `npm start` runs it). Plain DOM, no framework;
 * every value from the room is written with `textContent`, never as HTML.
 */
import { type AgentInfo, connect, type Entity, type Json, type StoredEvent, type Team } from "../client/index.ts";
import { $, el } from "./dom.ts";
import { Gate, startLive } from "./live.ts";

declare global {
  interface Window {
    /** The page's team handle, for tests and for poking around in the console. */
    crosstalkTeam?: Team;
  }
}

/** Rows kept in the feed; older ones are dropped from the page (not from the stream). */
const MAX_FEED_ROWS = 500;

const params = new URLSearchParams(location.search);
const teamName = params.get("team") || "acme";
const agentId = params.get("agent") || `viewer-${Math.random().toString(36).slice(2, 8)}`;
const givenToken = params.get("token");

/**
 * The page's token, asked for on every (re)connect: the one in the URL, else a fresh one
 * from the development endpoint. Without either the room refuses (UNAUTHORIZED, shown).
 */
async function token(agent = agentId, role = "viewer"): Promise<string> {
  if (givenToken && agent === agentId) return givenToken;
  const q = new URLSearchParams({ agent, role });
  const res = await fetch(`/parties/main/${encodeURIComponent(teamName)}/dev/token?${q}`).catch(() => null);
  if (!res?.ok) return "";
  const body = (await res.json()) as { token?: unknown };
  return typeof body.token === "string" ? body.token : "";
}

const json = (value: unknown): string => JSON.stringify(value) ?? "undefined";

function showError(error: unknown): void {
  const box = $("error");
  const code = typeof error === "object" && error !== null && "code" in error ? `${String(error.code)}: ` : "";
  box.textContent = `${code}${error instanceof Error ? error.message : String(error)}`;
  box.hidden = false;
}

function setResult(testid: string, text: string, ok: boolean): void {
  const out = $(testid);
  out.textContent = text;
  out.dataset.ok = String(ok);
}

/** A value typed into a form: JSON when it parses, the raw text otherwise. */
function parseLoose(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}

// --- rendering ------------------------------------------------------------------------

function renderStatus(status: string): void {
  const node = $("status");
  node.textContent = status;
  node.dataset.status = status;
  document.body.dataset.status = status;
}

function renderRoster(agents: AgentInfo[]): void {
  const body = $("roster").querySelector("tbody") as HTMLTableSectionElement;
  const rows = [...agents]
    .sort((a, b) => a.agent.localeCompare(b.agent))
    .map((a) => {
      const tr = el("tr", undefined, { "data-testid": "roster-row", "data-agent": a.agent });
      const name = el("td");
      name.append(el("span", a.agent, { class: "mono" }));
      if (a.agent === agentId) name.append(" ", el("span", "you", { class: "tag" }));
      const status = el("td", undefined, { class: "mono" });
      const fields = Object.entries(a.status);
      status.textContent = fields.length ? fields.map(([k, v]) => `${k}=${json(v)}`).join(" ") : "–";
      const methods = el("td", undefined, { class: "mono" });
      methods.textContent = a.methods.length ? a.methods.join(", ") : "–";
      tr.append(name, el("td", a.role), status, methods);
      return tr;
    });
  body.replaceChildren(...rows);
  $("roster-count").textContent = String(agents.length);
}

let feedCount = 0;
function appendEvent(event: StoredEvent): void {
  const feed = $("feed");
  const li = el("li", undefined, {
    "data-testid": "feed-row",
    "data-seq": String(event.seq),
    "data-type": event.type,
    "data-source": event.source,
  });
  const time = new Date(event.ts);
  li.append(
    el("span", `#${event.seq}`, { class: "seq mono", "data-testid": "feed-seq" }),
    el("time", time.toLocaleTimeString(), { datetime: time.toISOString(), class: "small" }),
    el("span", event.type, { class: "type mono", "data-testid": "feed-type" }),
    el("span", event.source, { class: "source mono", "data-testid": "feed-source" }),
    el("code", json(event.data), { class: "data", "data-testid": "feed-data", title: json(event.data) }),
  );
  feed.prepend(li);
  while (feed.childElementCount > MAX_FEED_ROWS) feed.lastElementChild?.remove();
  $("feed-count").textContent = String(++feedCount);
  $("feed-empty").hidden = true;
}

function renderDeals(deals: [string, Entity][]): void {
  const table = $("deals");
  const fields = [...new Set(deals.flatMap(([, d]) => Object.keys(d)))].sort();
  const head = table.querySelector("thead tr") as HTMLTableRowElement;
  head.replaceChildren(...["Deal", ...fields].map((f) => el("th", f, { scope: "col" })));
  const body = table.querySelector("tbody") as HTMLTableSectionElement;
  body.replaceChildren(
    ...[...deals]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, deal]) => {
        const tr = el("tr", undefined, { "data-testid": "deal-row", "data-key": key });
        tr.append(el("th", key, { scope: "row", class: "mono" }));
        for (const f of fields) {
          tr.append(el("td", f in deal ? json(deal[f]) : "", { "data-field": f, class: "mono" }));
        }
        return tr;
      }),
  );
  table.hidden = deals.length === 0;
  $("deals-empty").hidden = deals.length > 0;
  $("deals-count").textContent = String(deals.length);
}

// --- wiring ---------------------------------------------------------------------------

/** Every connection of this tab goes through it: "take this tab offline" switches it. */
const gate = new Gate();

/** The two views as tabs (WAI-ARIA tabs: arrow keys move between them); `#inspector` opens the second. */
function tabs(): void {
  const all = [...document.querySelectorAll<HTMLButtonElement>('[role="tab"]')];
  const select = (tab: HTMLButtonElement, focus = false) => {
    for (const t of all) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      (document.getElementById(t.getAttribute("aria-controls") ?? "") as HTMLElement).hidden = !on;
    }
    if (focus) tab.focus();
    history.replaceState(null, "", tab.id === "tab-inspector" ? "#inspector" : location.pathname + location.search);
  };
  for (const [i, tab] of all.entries()) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (step) select(all[(i + step + all.length) % all.length] as HTMLButtonElement, true);
    });
  }
  if (location.hash === "#inspector") select(all.find((t) => t.id === "tab-inspector") as HTMLButtonElement);
}

function start(): void {
  tabs();
  $("team-name").textContent = teamName;
  $("agent-name").textContent = agentId;
  document.title = `crosstalk · ${teamName}`;
  renderDeals([]);

  let team: Team | undefined;
  const pending = connect({
    host: location.host,
    protocol: location.protocol === "https:" ? "wss" : "ws",
    team: teamName,
    agent: agentId,
    role: "viewer",
    token: () => token(),
    WebSocket: gate.Socket,
    // Back soon after "take this tab offline" is switched off.
    maxReconnectDelayMs: 1500,
    waitForOnline: false,
  });
  pending.catch(showError);
  void pending.then((t) => {
    team = t;
    window.crosstalkTeam = t;
    renderStatus(t.status);
    t.on("status", (status) => {
      renderStatus(status);
      if (status === "online") $("error").hidden = true;
    });
    t.on("agents", renderRoster);
    t.on("error", (error) => showError(error));
    t.online().catch(showError);

    t.subscribe(">", (event) => appendEvent(event), { from: "start" });

    const deals = t.state("deals");
    const redraw = () => renderDeals(deals.entries());
    deals.observe(redraw);
    deals.ready.then(redraw, showError);

    startLive({
      team: t,
      gate,
      base: (agent, role) => ({
        host: location.host,
        protocol: location.protocol === "https:" ? "wss" : "ws",
        team: teamName,
        token: () => token(agent, role),
        maxReconnectDelayMs: 1500,
      }),
    });
  });

  $<HTMLFormElement>("publish-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!team) return;
    const form = e.currentTarget as HTMLFormElement;
    const type = (form.elements.namedItem("type") as HTMLInputElement).value.trim();
    const text = (form.elements.namedItem("data") as HTMLTextAreaElement).value;
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      return setResult("publish-result", "Data must be valid JSON.", false);
    }
    setResult("publish-result", "Publishing…", true);
    try {
      const ack = await team.publish(type, data);
      setResult("publish-result", `Stored as #${ack.seq}.`, true);
    } catch (error) {
      setResult("publish-result", error instanceof Error ? error.message : String(error), false);
    }
  });

  $<HTMLFormElement>("deal-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!team) return;
    const form = e.currentTarget as HTMLFormElement;
    const key = (form.elements.namedItem("deal") as HTMLInputElement).value.trim();
    const field = (form.elements.namedItem("field") as HTMLInputElement).value.trim();
    const value = parseLoose((form.elements.namedItem("value") as HTMLInputElement).value);
    try {
      team.state("deals").update(key, { [field]: value });
      setResult("deal-result", `Set ${key}.${field}.`, true);
    } catch (error) {
      setResult("deal-result", error instanceof Error ? error.message : String(error), false);
    }
  });
}

start();

// The app shell stays in a service worker's cache (demo/sw.js), so the page reloads offline.
void navigator.serviceWorker?.register("/sw.js").catch(() => {});
