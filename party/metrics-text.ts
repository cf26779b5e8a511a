/**
 * `GET …/<team>/metrics`: the room's counters (`metrics.ts`) plus gauges read from the
 * modules at scrape time, in the Prometheus text format.
 */
import * as Y from "yjs";
import { DLQ_SUFFIX } from "../protocol/index.ts";
import type { Consumers } from "./consumers.ts";
import type { DocHub } from "./docs.ts";
import type { RoomModule } from "./handlers.ts";
import type { GaugeSample, Metrics } from "./metrics.ts";
import type { Presence } from "./presence.ts";
import type { Router } from "./rpc.ts";
import type { Streams } from "./streams.ts";

export type MetricsSources = {
  metrics: Metrics;
  presence: Presence;
  streams: Streams;
  consumers: Consumers;
  hub: DocHub;
  router: Router;
  /** Open sockets, agents and stock Yjs clients alike. */
  connections: () => number;
};

export async function metricsText(m: MetricsSources): Promise<string> {
  const roles = new Map<string, number>();
  for (const s of m.presence.sessions()) roles.set(s.role, (roles.get(s.role) ?? 0) + 1);
  const streams = await m.streams.loaded();
  const lag: GaugeSample[] = [];
  for (const stream of streams) {
    for (const c of (await m.consumers.list(stream.name)).consumers) {
      lag.push({ labels: { stream: stream.name, consumer: c.name, kind: c.kind }, value: c.lag });
    }
  }
  const docs = [...m.hub.all()];
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
      help: "Last seq of each loaded stream.",
      samples: streams.map((s) => ({ labels: { stream: s.name }, value: s.head })),
    },
    {
      name: "crosstalk_dlq_depth",
      help: "Events in each loaded dead-letter stream.",
      samples: streams
        .filter((s) => s.name.endsWith(DLQ_SUFFIX))
        .map((s) => ({ labels: { stream: s.name }, value: s.head })),
    },
    { name: "crosstalk_consumer_lag", help: "Events published after a consumer's position.", samples: lag },
    {
      name: "crosstalk_rpc_in_flight",
      help: "Calls routed and not yet answered.",
      samples: [{ value: m.router.inFlight }],
    },
    {
      name: "crosstalk_doc_size_bytes",
      help: "Encoded size of each loaded document.",
      samples: docs.map((d) => ({ labels: { doc: d.name }, value: Y.encodeStateAsUpdate(d.ydoc).byteLength })),
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
