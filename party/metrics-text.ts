/**
 * `GET …/<team>/metrics`: the room's counters (`metrics.ts`) plus gauges read from the
 * modules at scrape time, in the Prometheus text format.
 */
import * as Y from "yjs";
import { DLQ_SUFFIX, type RoomLimits } from "../protocol/index.ts";
import type { Consumers } from "./consumers.ts";
import type { DocHub } from "./docs.ts";
import type { RoomModule } from "./handlers.ts";
import type { Inbox } from "./inbox.ts";
import type { GaugeSample, Metrics } from "./metrics.ts";
import type { Presence } from "./presence.ts";
import type { Router } from "./rpc.ts";
import type { Session } from "./session.ts";
import type { Streams } from "./streams.ts";

export type MetricsSources = {
  metrics: Metrics;
  presence: Presence;
  streams: Streams;
  consumers: Consumers;
  hub: DocHub;
  router: Router;
  inbox: Inbox;
  /** Open sockets, agents and stock Yjs clients alike. */
  connections: () => number;
  /** Every open session (agent sockets and stock Yjs clients), to count sockets per agent id. */
  sessions: () => Iterable<Session>;
  /** The room's per-connection limits, exported so alerts can compare usage with them. */
  limits: RoomLimits;
  /** What the room may hold in memory (`CROSSTALK_MEMORY_LIMIT_BYTES`; PartyKit/workerd gives a room 128 MB). */
  memoryLimitBytes: number;
};

/** The default of {@link MetricsSources.memoryLimitBytes}: a Durable Object's 128 MB. */
export const DEFAULT_MEMORY_LIMIT_BYTES = 128 * 1024 * 1024;

export async function metricsText(m: MetricsSources): Promise<string> {
  const roles = new Map<string, number>();
  for (const s of m.presence.sessions()) roles.set(s.role, (roles.get(s.role) ?? 0) + 1);
  const streams = await m.streams.summaries();
  const lag: GaugeSample[] = [];
  const position: GaugeSample[] = [];
  for (const stream of streams) {
    for (const c of (await m.consumers.list(stream.name)).consumers) {
      const labels = { stream: stream.name, consumer: c.name, kind: c.kind };
      lag.push({ labels, value: c.lag });
      position.push({ labels, value: c.acked });
    }
  }
  const docs = [...m.hub.all()];
  const docBytes = docs.map((d) => Y.encodeStateAsUpdate(d.ydoc).byteLength);
  const sockets = new Map<string, number>();
  for (const s of m.sessions()) if (!s.closed) sockets.set(s.agent, (sockets.get(s.agent) ?? 0) + 1);
  const inboxes = await m.inbox.depths();
  // A live agent with an empty inbox reads 0, not nothing: "never emptied" alerts need the zeros.
  for (const s of m.presence.sessions()) if (!inboxes.has(s.agent)) inboxes.set(s.agent, 0);
  return m.metrics.render([
    {
      name: "crosstalk_connections",
      help: "Open sockets (agents and stock Yjs clients).",
      samples: [{ value: m.connections() }],
    },
    {
      name: "crosstalk_agents",
      help: "Connected agents, by role.",
      samples: [...roles].map(([role, value]) => ({ labels: { role }, value })),
    },
    {
      name: "crosstalk_stream_head_seq",
      help: "Last seq of each stream used since the room started.",
      samples: streams.map((s) => ({ labels: { stream: s.name }, value: s.head })),
    },
    {
      name: "crosstalk_dlq_depth",
      help: "Events in each dead-letter stream used since the room started.",
      samples: streams
        .filter((s) => s.name.endsWith(DLQ_SUFFIX))
        .map((s) => ({ labels: { stream: s.name }, value: s.head })),
    },
    { name: "crosstalk_consumer_lag", help: "Events published after a consumer's position.", samples: lag },
    {
      name: "crosstalk_consumer_position",
      help: "The seq up to which a consumer has acknowledged (a group's floor): one that never moves while lag > 0 is stalled.",
      samples: position,
    },
    {
      name: "crosstalk_rpc_in_flight",
      help: "Calls routed and not yet answered.",
      samples: [{ value: m.router.inFlight }],
    },
    {
      name: "crosstalk_doc_size_bytes",
      help: "Encoded size of each loaded document.",
      samples: docs.map((d, i) => ({ labels: { doc: d.name }, value: docBytes[i] as number })),
    },
    {
      name: "crosstalk_doc_stored_tail_bytes",
      help: "Bytes of update records stored since each document's last snapshot.",
      samples: docs.map((d) => ({ labels: { doc: d.name }, value: d.stored.meta.tailBytes })),
    },
    {
      name: "crosstalk_doc_subscribers",
      help: "Sockets syncing each loaded document.",
      samples: docs.map((d) => ({ labels: { doc: d.name }, value: d.subscribers.size })),
    },
    {
      name: "crosstalk_memory_bytes",
      help: "Estimated memory the room holds: the encoded size of its loaded documents (a lower bound).",
      samples: [{ value: docBytes.reduce((a, b) => a + b, 0) }],
    },
    {
      name: "crosstalk_memory_limit_bytes",
      help: "What the room may hold in memory (CROSSTALK_MEMORY_LIMIT_BYTES).",
      samples: [{ value: m.memoryLimitBytes }],
    },
    {
      name: "crosstalk_limit",
      help: "The room's per-connection limits (DEFAULT_ROOM_LIMITS and CROSSTALK_* overrides), by limit.",
      samples: Object.entries(m.limits).map(([limit, value]) => ({ labels: { limit }, value })),
    },
    {
      name: "crosstalk_agent_sockets",
      help: "Open sockets of each agent id (its agent socket and stock Yjs providers; limit maxConnectionsPerAgent).",
      samples: [...sockets].map(([agent, value]) => ({ labels: { agent }, value })),
    },
    {
      name: "crosstalk_inbox_depth",
      help: "Messages stored for each agent and not yet acknowledged.",
      samples: [...inboxes].map(([agent, value]) => ({ labels: { agent }, value })),
    },
  ]);
}

export const metricsModule = (sources: MetricsSources): RoomModule => ({
  frames: {},
  routes: [
    {
      path: "metrics",
      handle: async () =>
        new Response(await metricsText(sources), { headers: { "content-type": "text/plain; version=0.0.4" } }),
    },
  ],
});
