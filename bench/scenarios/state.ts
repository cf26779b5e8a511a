/**
 * state: shared state under concurrent writers, and loading a big namespace.
 *
 * - converge: 10 agents each make 1,000 `update(key, {field: value})` calls at once,
 *   spread over 50 entities; every agent writes its own field (so the final state is
 *   known) and a shared `last` field (so writes conflict). Measured until all 10 replicas
 *   hold every agent's last write and are identical. Baseline: 10 stock y-partykit clients
 *   making the same writes to a Y.Map of Y.Maps.
 * - load: a new agent opens a namespace of 100,000 entities (quick: 20,000) and waits for
 *   `ready`. Baseline: a y-partykit client syncing the same entities.
 */
import * as Y from "yjs";
import type { Namespace, Team } from "../../client/node.ts";
import {
  type BenchServer,
  collectGarbage,
  cuttableSocket,
  type Metric,
  range,
  type Scenario,
  waitFor,
  withCpu,
  within,
  type YClient,
  yClient,
} from "../lib.ts";

const AGENTS = 10;
const KEYS = 50;

type Replica = { update(key: string, patch: Record<string, unknown>): void; json(): Record<string, unknown> };

/** Stable text of a JSON value (object keys sorted), to compare replicas. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
}

type Converged = { ms: number; roomUs: number };

/** Runs the concurrent writes: ms until every replica is complete and identical, room CPU per update. */
async function converge(server: BenchServer, replicas: Replica[], updates: number): Promise<Converged> {
  const expectedField = (i: number, key: number) => {
    // The last j < updates with j % KEYS === key.
    const last = updates - 1 - ((updates - 1 - key) % KEYS);
    return `${i}:${last}`;
  };
  const complete = () => {
    const first = replicas[0]?.json() ?? {};
    for (let k = 0; k < KEYS; k++) {
      const entity = first[`e${k}`] as Record<string, unknown> | undefined;
      for (let i = 0; i < AGENTS; i++) if (entity?.[`a${i}`] !== expectedField(i, k)) return false;
    }
    const text = canonical(first);
    return replicas.every((r) => canonical(r.json()) === text);
  };
  const measured = await withCpu(server, async () => {
    const t0 = performance.now();
    for (let j = 0; j < updates; j++) {
      replicas.forEach((r, i) => {
        r.update(`e${j % KEYS}`, { [`a${i}`]: `${i}:${j}`, last: `${i}:${j}` });
      });
    }
    await waitFor("replicas converge", complete, { timeoutMs: 180_000, intervalMs: 5 });
    return performance.now() - t0;
  });
  return { ms: measured.result, roomUs: (measured.roomCpuS / (replicas.length * updates)) * 1e6 };
}

const entity = (i: number) => ({
  stage: "open",
  amount: i,
  owner: `agent-${i % 10}`,
  updatedAt: 1_700_000_000_000 + i,
});

async function crosstalkConverge(server: BenchServer, tag: string, run: number, updates: number): Promise<Converged> {
  const team = `state-${tag}-${run}`;
  const agents: Team[] = await Promise.all(range(AGENTS).map((i) => server.agent(`writer-${i}`, { team })));
  try {
    const spaces: Namespace[] = agents.map((a) => a.state("bench"));
    await within("namespaces ready", Promise.all(spaces.map((s) => s.ready)), 60_000);
    // Entities exist before the race, as in the baseline (whose nested Y.Maps would keep
    // only one of two concurrent creations of a key).
    const [first] = spaces as [Namespace];
    first.transact(() => {
      for (let k = 0; k < KEYS; k++) first.set(`e${k}`, { created: true });
    });
    await waitFor("entities everywhere", () => spaces.every((s) => s.size === KEYS), { timeoutMs: 30_000 });
    return await converge(
      server,
      spaces.map((s) => ({ update: (key, patch) => s.update(key, patch as never), json: () => s.toJSON() })),
      updates,
    );
  } finally {
    await Promise.all(agents.map((a) => a.close()));
  }
}

async function ypartyConverge(server: BenchServer, tag: string, run: number, updates: number): Promise<Converged> {
  const clients: YClient[] = range(AGENTS).map(() => yClient(server, `state-${tag}-${run}`));
  try {
    await Promise.all(clients.map((c) => c.synced));
    const maps = clients.map((c) => c.doc.getMap<Y.Map<unknown>>("entities"));
    const [first] = clients as [YClient];
    first.doc.transact(() => {
      for (let k = 0; k < KEYS; k++) maps[0]?.set(`e${k}`, new Y.Map<unknown>([["created", true]]));
    });
    await waitFor("y entities everywhere", () => maps.every((m) => m.size === KEYS), { timeoutMs: 30_000 });
    return await converge(
      server,
      clients.map((c, i) => {
        const map = maps[i] as Y.Map<Y.Map<unknown>>;
        return {
          update: (key, patch) =>
            c.doc.transact(() => {
              const fields = map.get(key);
              if (fields) for (const [f, v] of Object.entries(patch)) fields.set(f, v);
            }),
          json: () => map.toJSON(),
        };
      }),
      updates,
    );
  } finally {
    for (const c of clients) c.destroy();
  }
}

/*
 * The witnesses check a fill from a fresh client, then are dropped: nothing here keeps one
 * (a variable a closure of `run` holds would; the kit's pool forgets an agent once closed), so neither
 * side's loads run beside a whole extra namespace on the heap. The loaders are dropped alike.
 */

/** A fresh agent sees all `entities` of the namespace; closed and dropped afterwards. */
async function witness(server: BenchServer, team: string, entities: number): Promise<void> {
  const agent = await server.agent("witness", { team });
  try {
    const seen = agent.state("big");
    await within("witness ready", seen.ready, 120_000);
    await waitFor("witness has every entity", () => seen.size >= entities, { timeoutMs: 180_000, intervalMs: 20 });
  } finally {
    await agent.close();
  }
}

/** A fresh y-partykit client sees all `entities`; destroyed and dropped afterwards. */
async function yWitness(server: BenchServer, team: string, entities: number): Promise<void> {
  const client = yClient(server, team);
  try {
    await client.synced;
    await waitFor("y witness has every entity", () => client.doc.getMap("entities").size >= entities, {
      timeoutMs: 180_000,
      intervalMs: 20,
    });
  } finally {
    client.destroy();
  }
}

export const state: Scenario = {
  name: "state",
  steps: (o) => o.runs * 2 + 2 + o.runs * 2,
  async run(ctx) {
    const { quick, runs } = ctx.options;
    const UPDATES = quick ? 300 : 1000;
    const ENTITIES = quick ? 20_000 : 100_000;
    const server = await ctx.server();
    const ms: number[] = [];
    const yMs: number[] = [];
    const roomUs: number[] = [];
    const yRoomUs: number[] = [];
    const loadMs: number[] = [];
    const loadKb: number[] = [];
    const yLoadMs: number[] = [];
    const yLoadKb: number[] = [];
    const loadCpuMs: number[] = [];
    const yLoadCpuMs: number[] = [];
    for (let run = 0; run < runs; run++) {
      const x = await crosstalkConverge(server, ctx.tag, run, UPDATES);
      ms.push(x.ms);
      roomUs.push(x.roomUs);
      ctx.step(`crosstalk converge ${run + 1}/${runs}`);
      const y = await ypartyConverge(server, ctx.tag, run, UPDATES);
      yMs.push(y.ms);
      yRoomUs.push(y.roomUs);
      ctx.step(`y-partykit converge ${run + 1}/${runs}`);
    }

    // Load: fill once, then time fresh agents.
    const team = `state-load-${ctx.tag}`;
    const filler = await server.agent("filler", { team });
    const big = filler.state("big");
    await big.ready;
    for (let b = 0; b < ENTITIES; b += 1000) {
      big.transact(() => {
        for (let i = b; i < Math.min(ENTITIES, b + 1000); i++) big.set(`deal-${i}`, entity(i));
      });
      await new Promise((r) => setImmediate(r));
      ctx.status(`filling namespace: ${b + 1000} entities`);
    }
    await witness(server, team, ENTITIES);
    ctx.step("namespace filled");

    const yWriter = yClient(server, team);
    try {
      await yWriter.synced;
      const entities = yWriter.doc.getMap<Y.Map<unknown>>("entities");
      for (let b = 0; b < ENTITIES; b += 1000) {
        yWriter.doc.transact(() => {
          for (let i = b; i < Math.min(ENTITIES, b + 1000); i++) {
            entities.set(`deal-${i}`, new Y.Map<unknown>(Object.entries(entity(i))));
          }
        });
        await new Promise((r) => setImmediate(r));
      }
      await yWitness(server, team, ENTITIES);
      ctx.step("y-partykit map filled");

      for (let run = 0; run < runs; run++) {
        // Each load, on both sides, starts on a heap without the previous loads' garbage, so
        // none pays for collecting another's (`collectGarbage`).
        collectGarbage();
        const counter = cuttableSocket();
        let loader: Team | undefined;
        try {
          const { result: ns, ...cpu } = await withCpu(server, async () => {
            const t0 = performance.now();
            // As long a wait as for `ready`: on a busy machine workerd can take over 15 s to answer.
            loader = await server.agent(`loader-${run}`, {
              team,
              WebSocket: counter.WebSocket,
              connectTimeoutMs: 120_000,
            });
            const ns = loader.state("big");
            await within("namespace load", ns.ready, 120_000);
            loadMs.push(performance.now() - t0);
            return ns;
          });
          loadCpuMs.push((cpu.benchCpuS + cpu.roomCpuS) * 1000);
          loadKb.push(counter.bytesReceived / 1024);
          if (ns.size < ENTITIES) throw new Error(`loaded ${ns.size} of ${ENTITIES} entities`);
        } finally {
          await loader?.close();
        }
        ctx.step(`crosstalk load ${run + 1}/${runs}`);

        collectGarbage();
        const yCounter = cuttableSocket();
        let yLoader: YClient | undefined;
        try {
          const cpu = await withCpu(server, async () => {
            const y0 = performance.now();
            yLoader = yClient(server, team, { wire: yCounter });
            await yLoader.synced;
            yLoadMs.push(performance.now() - y0);
          });
          yLoadCpuMs.push((cpu.benchCpuS + cpu.roomCpuS) * 1000);
          yLoadKb.push(yCounter.bytesReceived / 1024);
        } finally {
          yLoader?.destroy();
        }
        ctx.step(`y-partykit load ${run + 1}/${runs}`);
      }
    } finally {
      yWriter.destroy();
      await filler.close();
    }
    const metrics: Metric[] = [
      {
        name: "converge_ms",
        unit: "ms",
        runs: ms,
        baselineRuns: yMs,
        baselineName: "y-partykit",
        note: `${AGENTS} agents x ${UPDATES} concurrent updates over ${KEYS} entities`,
      },
      {
        name: "load_ms",
        unit: "ms",
        runs: loadMs,
        baselineRuns: yLoadMs,
        baselineName: "y-partykit",
        note: `${ENTITIES.toLocaleString("en-US")} entities, from connect to synced`,
      },
      {
        // The room keeps a big namespace's compressed snapshot for the next loaders, so the
        // first loader after the fill pays for making it; one sample, so noisy.
        name: "load_first_ms",
        unit: "ms",
        runs: loadMs.slice(0, 1),
        baselineRuns: yLoadMs.slice(0, 1),
        baselineName: "y-partykit",
        note: "the first loader after the fill, when the room makes its compressed snapshot (one sample)",
      },
      {
        // Steadier than load_ms on a shared machine: what a load costs, not how long it waited for a core.
        name: "load_cpu_ms",
        unit: "ms",
        runs: loadCpuMs,
        baselineRuns: yLoadCpuMs,
        baselineName: "y-partykit",
        note: "CPU of one load: the loading process plus workerd (the room)",
      },
      { name: "load_kb", unit: "KiB", runs: loadKb, baselineRuns: yLoadKb, baselineName: "y-partykit" },
      {
        name: "room_cpu_per_update",
        unit: "µs",
        runs: roomUs,
        baselineRuns: yRoomUs,
        baselineName: "y-partykit",
        note: "workerd CPU per update while converging",
      },
    ];
    return metrics;
  },
};
