/**
 * What every room module shares: storage, the room clock, metrics, the roster and the
 * document hub. `TeamRoom` builds it once and hands it to each module.
 */
import type { DocHub } from "./docs.ts";
import type { Metrics } from "./metrics.ts";
import type { Presence } from "./presence.ts";
import type { KvStorage } from "./storage.ts";

export type RoomContext = {
  readonly storage: KvStorage;
  readonly now: () => number;
  readonly metrics: Metrics;
  readonly presence: Presence;
  readonly hub: DocHub;
};
