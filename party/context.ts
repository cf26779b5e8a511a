/**
 * What every room module shares: storage, the room clock, metrics, the roster, the
 * document hub, the log of recent calls and messages, and the alarm schedule. `TeamRoom` builds it once and
 * hands it to each module.
 */
import type { Alarms } from "./alarms.ts";
import type { DocHub } from "./docs.ts";
import type { Metrics } from "./metrics.ts";
import type { OtlpExport } from "./otlp.ts";
import type { Presence } from "./presence.ts";
import type { KvStorage } from "./storage.ts";
import type { TraceLog } from "./trace.ts";

export type RoomContext = {
  readonly storage: KvStorage;
  readonly now: () => number;
  readonly metrics: Metrics;
  readonly presence: Presence;
  readonly hub: DocHub;
  readonly traces: TraceLog;
  /** The room's one alarm schedule (`alarms.ts`): deadlines that must outlive a hibernation. */
  readonly alarms: Alarms;
  /** The room's hops as OpenTelemetry spans, when `CROSSTALK_OTLP_ENDPOINT` is set (`otlp.ts`). */
  readonly spans?: OtlpExport;
};
