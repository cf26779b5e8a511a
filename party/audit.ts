/**
 * The audit stream (`_audit`, `AUDIT_STREAM`): security-relevant acts, appended by the room
 * as events of source `room`. No agent can write it: `policy.ts` refuses every publish to it
 * whatever the policy grants, and log documents are room-written anyway (`DocHub`). It is a
 * stream like any other for reading (admins: `stream.subscribe:_audit`), exporting and
 * retention.
 *
 * Event types: `audit.connection.refused` (a socket the room closed at admission),
 * `audit.frame.refused` (a frame refused as forbidden, unauthenticated, malformed, too large or
 * over a limit), `audit.policy.changed`, `audit.token.takeover` (a newer signed connection took
 * an agent id over), `audit.retention.removed` (`retention.ts`), `audit.dropped`.
 *
 * Cheap and bounded: acts are aggregated in memory per (type, agent, code, frame) and
 * appended once per `flushMs` window as one event each, with `count`, `firstAt`, `lastAt`.
 * A window holds at most `maxKeys` distinct aggregates; acts beyond that are only counted,
 * into one `audit.dropped` event. So a refused-frame flood costs one map update per frame and
 * at most `maxKeys + 1` events per window, however many frames or agents flood.
 */
import { AUDIT_STREAM, type EventInput, type Json } from "../protocol/index.ts";
import type { Streams } from "./streams.ts";

export type AuditType =
  | "connection.refused"
  | "frame.refused"
  | "policy.changed"
  | "token.takeover"
  | "retention.removed";

export type AuditOptions = {
  /** How long acts aggregate before they are appended. */
  flushMs: number;
  /** Distinct aggregates per window; the rest only count towards `audit.dropped`. */
  maxKeys: number;
};

type Pending = { type: AuditType; data: Record<string, Json>; count: number; firstAt: number; lastAt: number };

export class Audit {
  readonly #pending = new Map<string, Pending>();
  #dropped = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #seq = 0;
  readonly #epoch = Math.random().toString(36).slice(2, 10);

  constructor(private readonly deps: { streams: Streams; now: () => number; options: AuditOptions }) {}

  /**
   * Records one act. `data` identifies it (agent, code, frame type…): acts with equal type
   * and data within a window become one event with their count.
   */
  record(type: AuditType, data: Record<string, Json>): void {
    const now = this.deps.now();
    const key = `${type}\u0000${JSON.stringify(data)}`;
    const pending = this.#pending.get(key);
    if (pending) {
      pending.count++;
      pending.lastAt = now;
    } else if (this.#pending.size >= this.deps.options.maxKeys) {
      this.#dropped++;
    } else {
      this.#pending.set(key, { type, data, count: 1, firstAt: now, lastAt: now });
    }
    this.#timer ??= setTimeout(() => void this.flush(), this.deps.options.flushMs);
  }

  /** Appends what the window aggregated (the room's own append: no permission applies). */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#pending.size === 0 && this.#dropped === 0) return;
    const acts = [...this.#pending.values()];
    const dropped = this.#dropped;
    this.#pending.clear();
    this.#dropped = 0;
    const now = this.deps.now();
    const events: EventInput[] = acts.map((a) => ({
      id: this.#id(),
      type: `audit.${a.type}`,
      data: { ...a.data, count: a.count, firstAt: a.firstAt, lastAt: a.lastAt },
    }));
    if (dropped > 0) events.push({ id: this.#id(), type: "audit.dropped", data: { count: dropped, lastAt: now } });
    const stream = await this.deps.streams.open(AUDIT_STREAM);
    const result = this.deps.streams.append(stream, events, "room");
    if (!result.ok) console.error("[crosstalk] audit events not appended", result.error);
  }

  #id(): string {
    return `audit-${this.#epoch}-${++this.#seq}`;
  }
}
