/**
 * Consumers that the room remembers.
 *
 * Durable consumers: a name whose ack position (`acked`: everything up to it is handled)
 * lives in the room, so whoever subscribes under that name next resumes right after it.
 * The client reads events itself (from the synced log) and reports progress.
 *
 * Consumer groups (competing consumers): the room leases each matching event to exactly one
 * live member at a time, with an ack deadline and a cap of in-flight events per member
 * (`maxAckPending`). An expired lease, a nak or a departed member sends the event to another
 * member; after `maxDeliver` deliveries it goes to `<stream>.dlq`. Events with a `key` are
 * handed out one at a time per key, in seq order.
 *
 * Storage: `cons|<stream>|<name>` → {@link DurableRecord}; `grp|<stream>|<name>` →
 * {@link GroupRecord}, leases included (seq, agent, ack deadline). After a restart or a
 * hibernation wake a leased event stays with its agent until its ack deadline, as before:
 * the agent's member session (re)joining takes its leases back, and only what was never
 * delivered, or whose deadline passed, goes out again. Ack deadlines are on the room's alarm
 * schedule (`alarms.ts`), so leases in flight do not keep the room awake.
 */
import {
  backoff,
  type ClientFrame,
  type ConsumerInfo,
  CrosstalkError,
  deadLetter,
  eventAt,
  matchesPattern,
  type StoredEvent,
} from "../protocol/index.ts";
import type { Alarms } from "./alarms.ts";
import type { RoomContext } from "./context.ts";
import type { Outcome, RoomModule } from "./handlers.ts";
import { keys } from "./keys.ts";
import type { Session } from "./session.ts";
import { type KvStorage, putAll } from "./storage.ts";
import type { StreamState, Streams } from "./streams.ts";

type DurableRecord = { acked: number; updatedAt: number };
export type JoinFrame = Extract<ClientFrame, { type: "group.join" }>;
type GroupConfig = Pick<JoinFrame, "pattern" | "ackWaitMs" | "maxDeliver">;
type GroupRecord = {
  config: GroupConfig;
  floor: number;
  done: number[];
  deliveries: [number, number][];
  /** Events leased and not yet acked: seq, the agent holding it, its ack deadline (absent in older records). */
  leases?: [number, string, number][];
  updatedAt: number;
};

/** A leased event; `member` is null while its agent has not (re)joined since a restart or wake. */
type Lease = { member: Session | null; agent: string; deadline: number };

type Group = {
  readonly stream: StreamState;
  readonly name: string;
  readonly config: GroupConfig;
  /** Every seq up to here is finished (acked, skipped or dead-lettered). */
  floor: number;
  /** Finished seqs above the floor. */
  readonly done: Set<number>;
  /** The next seq not yet looked at. */
  next: number;
  /** Seqs ready to lease again (expired, nak'd after backoff, unblocked), lowest first. */
  ready: number[];
  /** Per key: seqs waiting for the key's current event to finish. */
  readonly blocked: Map<string, number[]>;
  /** Key → the seq holding it. */
  readonly keyOwner: Map<string, number>;
  readonly leases: Map<number, Lease>;
  readonly deliveries: Map<number, number>;
  /** Events of leased, ready and blocked seqs, so redelivery needs no read. */
  readonly events: Map<number, StoredEvent>;
  readonly members: Map<Session, { maxAckPending: number; inFlight: number }>;
  dispatching: boolean;
  again: boolean;
  updatedAt: number;
};

const consKey = keys.consumer;
const leaseAlarm = (group: Group, seq: number): string => `grp|${group.stream.name}|${group.name}|${seq}`;
const grpKey = keys.group;

/** Durable consumers' positions kept in memory at most (the least recently used go; storage has them all). */
export const MAX_CACHED_POSITIONS = 10_000;

export class Consumers {
  /** Recently used durable positions, oldest use first; at most `maxCachedPositions`. */
  readonly #durable = new Map<string, DurableRecord>();
  /** Position writes handed to storage and not yet resolved: none is evicted meanwhile. */
  #writing = 0;
  readonly #groups = new Map<string, Promise<Group>>();
  readonly #dirty = new Map<string, unknown>();
  #flushScheduled = false;

  private readonly storage: KvStorage;
  private readonly now: () => number;
  private readonly alarms: Alarms;

  constructor(
    ctx: RoomContext,
    private readonly streams: Streams,
    private readonly maxCachedPositions = MAX_CACHED_POSITIONS,
  ) {
    ({ storage: this.storage, now: this.now, alarms: this.alarms } = ctx);
  }

  /** Caches `record` as the newest used; past the budget, forgets the least recently used stored ones. */
  #remember(key: string, record: DurableRecord): void {
    this.#durable.delete(key);
    this.#durable.set(key, record);
    this.#trimPositions();
  }

  /** Forgets the least recently used positions past the budget, once storage holds every one. */
  #trimPositions(): void {
    if (this.#durable.size <= this.maxCachedPositions || this.#dirty.size > 0 || this.#writing > 0) return;
    for (const old of this.#durable.keys()) {
      if (this.#durable.size <= this.maxCachedPositions) break;
      this.#durable.delete(old);
    }
  }

  // --- durable consumers ----------------------------------------------------------------

  async position(stream: string, consumer: string): Promise<number | null> {
    const key = consKey(stream, consumer);
    let record = this.#durable.get(key);
    if (!record) {
      record = await this.storage.get<DurableRecord>(key);
      if (!record) return null;
      // A concurrent ack may have landed while we read.
      record = this.#durable.get(key) ?? record;
    }
    this.#remember(key, record);
    return record.acked;
  }

  ack(stream: string, consumer: string, seq: number): void {
    const key = consKey(stream, consumer);
    const current = this.#durable.get(key);
    // Positions only move forward; a stale ack from a slow socket cannot rewind them.
    if (current && current.acked >= seq) return;
    const record = { acked: seq, updatedAt: this.now() };
    this.#persist(key, record);
    this.#remember(key, record);
  }

  /** Durable consumers and groups of `stream`, with their lag (names only: no event content). */
  async list(streamName: string): Promise<{ head: number; consumers: ConsumerInfo[] }> {
    const groups = await this.storage.list<GroupRecord>({ prefix: grpKey(streamName, "") });
    // Groups not loaded yet need the stream; otherwise its head is enough (no reload: `doc-cache.ts`).
    const stream = [...groups.keys()].some((key) => !this.#groups.has(key))
      ? await this.streams.open(streamName)
      : null;
    const head = stream ? stream.head : await this.streams.head(streamName);
    const out: ConsumerInfo[] = [];
    const stored = await this.storage.list<DurableRecord>({ prefix: consKey(streamName, "") });
    // Stored positions, newer ones from memory (not cached: a listing is not a use).
    const all = new Map(stored);
    for (const [key, record] of this.#durable) if (key.startsWith(consKey(streamName, ""))) all.set(key, record);
    for (const [key, record] of all) {
      const name = key.slice(consKey(streamName, "").length);
      out.push({
        name,
        kind: "durable",
        acked: record.acked,
        lag: head - record.acked,
        updatedAt: record.updatedAt,
      });
    }
    for (const key of groups.keys())
      if (stream && !this.#groups.has(key)) this.#groups.set(key, this.#loadGroup(key, stream, null));
    for (const [key, loading] of this.#groups) {
      if (!key.startsWith(grpKey(streamName, ""))) continue;
      const g = await loading;
      out.push({
        name: g.name,
        kind: "group",
        acked: g.floor,
        lag: head - g.floor,
        updatedAt: g.updatedAt,
        members: g.members.size,
        inFlight: g.leases.size,
      });
    }
    return { head, consumers: out.sort((a, b) => a.name.localeCompare(b.name)) };
  }

  // --- groups ---------------------------------------------------------------------------

  /** The groups each session is a member of (keys), for the room's `maxSubscriptions` limit. */
  readonly #memberOf = new WeakMap<Session, Map<string, JoinFrame>>();

  /** How many groups `session` is a member of, and whether one is `stream`'s `group`. */
  memberships(session: Session): number {
    return this.#memberOf.get(session)?.size ?? 0;
  }

  isMember(session: Session, stream: string, group: string): boolean {
    return this.#memberOf.get(session)?.has(grpKey(stream, group)) ?? false;
  }

  /** The `group.join` of each group `session` is a member of: what it rejoins with after a wake. */
  joined(session: Session): JoinFrame[] {
    return [...(this.#memberOf.get(session)?.values() ?? [])];
  }

  /**
   * `resumed`: the session comes back from a hibernation with its socket (and its client's
   * queue of deliveries) intact, so its leases are only bound to it, not sent again.
   */
  async join(session: Session, frame: JoinFrame, { resumed = false } = {}): Promise<Outcome<"group.join">> {
    const stream = await this.streams.open(frame.stream);
    const key = grpKey(frame.stream, frame.group);
    let loading = this.#groups.get(key);
    if (!loading) {
      loading = this.#loadGroup(key, stream, frame);
      this.#groups.set(key, loading);
    }
    const group = await loading;
    if (group.config.pattern !== frame.pattern) {
      return {
        error: {
          code: "CONFLICT",
          message: `group ${frame.group} consumes ${group.config.pattern}, not ${frame.pattern}`,
        },
      };
    }
    const member = { maxAckPending: frame.maxAckPending, inFlight: 0 };
    group.members.set(session, member);
    // Leases this agent held before a restart or wake are its again. A client that reconnected
    // forgot what it had not handled yet: those go to it again (to it only), with a fresh deadline.
    for (const [seq, lease] of group.leases) {
      if (lease.member !== null || lease.agent !== session.agent) continue;
      member.inFlight++;
      const event = group.events.get(seq);
      if (resumed || !event) {
        lease.member = session;
        continue;
      }
      this.#lease(group, seq, { member: session, agent: session.agent, deadline: this.now() + group.config.ackWaitMs });
      const deliveries = group.deliveries.get(seq) ?? 1;
      session.sendFrame({ type: "group.deliver", stream: group.stream.name, group: group.name, event, deliveries });
    }
    const mine = this.#memberOf.get(session) ?? new Map<string, JoinFrame>();
    this.#memberOf.set(session, mine.set(key, frame));
    void this.#dispatch(group);
    return { reply: {} };
  }

  async #loadGroup(key: string, stream: StreamState, frame: JoinFrame | null): Promise<Group> {
    const record = await this.storage.get<GroupRecord>(key);
    const name = key.slice(grpKey(stream.name, "").length);
    let floor = record?.floor ?? 0;
    if (!record && frame) floor = frame.from === "start" ? 0 : frame.from === "end" ? stream.head : frame.from - 1;
    const config: GroupConfig = record?.config ?? {
      pattern: frame?.pattern ?? ">",
      ackWaitMs: frame?.ackWaitMs ?? 30_000,
      maxDeliver: frame?.maxDeliver ?? 5,
    };
    if (frame) Object.assign(config, { ackWaitMs: frame.ackWaitMs, maxDeliver: frame.maxDeliver });
    const group: Group = {
      stream,
      name,
      config,
      floor,
      done: new Set(record?.done ?? []),
      next: floor + 1,
      ready: [],
      blocked: new Map(),
      keyOwner: new Map(),
      leases: new Map(),
      deliveries: new Map(record?.deliveries ?? []),
      events: new Map(),
      members: new Map(),
      dispatching: false,
      again: false,
      updatedAt: record?.updatedAt ?? this.now(),
    };
    for (const [seq, agent, deadline] of record?.leases ?? []) {
      // A lease restored after a restart is still out: its seq comes back only if it expires.
      if (seq <= group.floor || group.done.has(seq) || group.leases.has(seq)) continue;
      const event = await this.#read(group, seq);
      if (!event) continue;
      group.events.set(seq, event);
      if (event.key !== undefined) group.keyOwner.set(event.key, seq);
      this.#lease(group, seq, { member: null, agent, deadline });
    }
    stream.listeners.add(() => void this.#dispatch(group));
    if (!record) this.#saveGroup(group);
    return group;
  }

  /** Records a lease and its ack deadline on the room's alarm schedule. */
  #lease(group: Group, seq: number, lease: Lease): void {
    group.leases.set(seq, lease);
    this.alarms.at(leaseAlarm(group, seq), lease.deadline, () => {
      if (group.leases.get(seq) !== lease) return;
      this.#expire(group, seq);
      void this.#dispatch(group);
    });
  }

  async #group(stream: string, name: string): Promise<Group | undefined> {
    return this.#groups.get(grpKey(stream, name));
  }

  leave(session: Session, stream: string, name: string): void {
    void this.#group(stream, name).then((g) => g && this.#removeMember(g, session));
  }

  /** The policy changed: `session` leaves every group whose pattern it may no longer read. */
  revoke(session: Session, mayRead: (stream: string, pattern: string) => boolean): void {
    for (const loading of this.#groups.values()) {
      void loading.then((g) => {
        if (g.members.has(session) && !mayRead(g.stream.name, g.config.pattern)) this.#removeMember(g, session);
      });
    }
  }

  /** A disconnected session leaves every group; its leases go to other members. */
  gone(session: Session): void {
    for (const loading of this.#groups.values()) void loading.then((g) => this.#removeMember(g, session));
  }

  #removeMember(group: Group, session: Session): void {
    if (!group.members.delete(session)) return;
    this.#memberOf.get(session)?.delete(grpKey(group.stream.name, group.name));
    for (const [seq, lease] of group.leases) if (lease.member === session) this.#expire(group, seq);
    void this.#dispatch(group);
  }

  async groupAck(session: Session, stream: string, name: string, seq: number): Promise<void> {
    const group = await this.#group(stream, name);
    if (!group?.members.has(session)) return;
    this.#unlease(group, seq);
    this.#finish(group, seq);
    void this.#dispatch(group);
  }

  async groupNak(session: Session, frame: Extract<ClientFrame, { type: "group.nak" }>): Promise<void> {
    const group = await this.#group(frame.stream, frame.group);
    if (!group?.members.has(session) || group.leases.get(frame.seq)?.agent !== session.agent) return;
    this.#unlease(group, frame.seq);
    const deliveries = group.deliveries.get(frame.seq) ?? 1;
    if (deliveries >= group.config.maxDeliver || frame.deadLetter) {
      await this.#deadLetter(group, frame.seq, frame.error);
    } else {
      // Back off before the next delivery: 100 ms, 200 ms, 400 ms … capped at 10 s.
      const delay = backoff(deliveries - 1, { baseMs: 100, capMs: 10_000, jitter: false });
      setTimeout(() => {
        this.#requeue(group, frame.seq);
        void this.#dispatch(group);
      }, delay);
    }
    void this.#dispatch(group);
  }

  #unlease(group: Group, seq: number): void {
    const lease = group.leases.get(seq);
    if (!lease) return;
    this.alarms.cancel(leaseAlarm(group, seq));
    group.leases.delete(seq);
    const member = lease.member && group.members.get(lease.member);
    if (member) member.inFlight--;
  }

  #expire(group: Group, seq: number): void {
    this.#unlease(group, seq);
    this.#requeue(group, seq);
  }

  #requeue(group: Group, seq: number): void {
    if (group.done.has(seq) || seq <= group.floor || group.ready.includes(seq)) return;
    group.ready.push(seq);
    group.ready.sort((a, b) => a - b);
  }

  #finish(group: Group, seq: number): void {
    if (seq <= group.floor || group.done.has(seq)) return;
    group.done.add(seq);
    group.deliveries.delete(seq);
    const event = group.events.get(seq);
    group.events.delete(seq);
    group.ready = group.ready.filter((s) => s !== seq);
    while (group.done.has(group.floor + 1)) {
      group.floor++;
      group.done.delete(group.floor);
    }
    // Hand the key to the next waiting event of the same key.
    if (event?.key !== undefined && group.keyOwner.get(event.key) === seq) {
      group.keyOwner.delete(event.key);
      const waiting = group.blocked.get(event.key);
      const nextSeq = waiting?.shift();
      if (waiting && waiting.length === 0) group.blocked.delete(event.key);
      if (nextSeq !== undefined) {
        group.keyOwner.set(event.key, nextSeq);
        this.#requeue(group, nextSeq);
      }
    }
    group.updatedAt = this.now();
    this.#saveGroup(group);
  }

  async #deadLetter(group: Group, seq: number, error: string): Promise<void> {
    const event = group.events.get(seq) ?? (await this.#read(group, seq));
    if (event) {
      const letter = deadLetter(event, { consumer: group.name, error, deliveries: group.deliveries.get(seq) ?? 0 });
      const dlq = await this.streams.open(letter.stream);
      // Dead-lettered before, maybe long ago (its id archived): not again.
      await this.streams.recall(dlq, [letter.input]);
      this.streams.append(dlq, [letter.input], "room");
    }
    this.#finish(group, seq);
  }

  async #read(group: Group, seq: number): Promise<StoredEvent | undefined> {
    const live = eventAt(group.stream.segments, seq);
    if (live) return live;
    try {
      const page = await this.streams.read(group.stream.name, seq, seq, 1);
      return page.events[0];
    } catch (error) {
      // Retention removed it (a group created after, or one retention was told not to wait
      // for): the group goes on at the stream's first kept event.
      const firstSeq = (error as CrosstalkError).details as { firstSeq?: number } | undefined;
      if (!(error instanceof CrosstalkError) || error.code !== "EVENTS_REMOVED" || !firstSeq?.firstSeq) throw error;
      for (let s = group.floor + 1; s < firstSeq.firstSeq; s++) this.#finish(group, s);
      group.next = Math.max(group.next, firstSeq.firstSeq);
      return undefined;
    }
  }

  /** The next seq to lease, or null when nothing is ready. */
  async #candidate(group: Group): Promise<number | null> {
    const ready = group.ready.shift();
    if (ready !== undefined) return ready;
    while (group.next <= group.stream.head) {
      const seq = group.next++;
      // A lease restored after a restart is still out: its seq comes back only if it expires.
      if (seq <= group.floor || group.done.has(seq) || group.leases.has(seq)) continue;
      const event = await this.#read(group, seq);
      if (!event || !matchesPattern(group.config.pattern, event.type)) {
        this.#finish(group, seq);
        continue;
      }
      group.events.set(seq, event);
      if (event.key !== undefined) {
        const owner = group.keyOwner.get(event.key);
        if (owner !== undefined && owner !== seq) {
          const waiting = group.blocked.get(event.key) ?? [];
          waiting.push(seq);
          group.blocked.set(event.key, waiting);
          continue;
        }
        group.keyOwner.set(event.key, seq);
      }
      return seq;
    }
    return null;
  }

  /** Leases ready events to members with spare capacity, least loaded first. */
  async #dispatch(group: Group): Promise<void> {
    if (group.dispatching) {
      group.again = true;
      return;
    }
    group.dispatching = true;
    try {
      do {
        group.again = false;
        for (;;) {
          let best: [Session, { maxAckPending: number; inFlight: number }] | null = null;
          for (const entry of group.members) {
            if (entry[1].inFlight < entry[1].maxAckPending && (!best || entry[1].inFlight < best[1].inFlight))
              best = entry;
          }
          if (!best) break;
          const seq = await this.#candidate(group);
          if (seq === null) break;
          const event = group.events.get(seq) ?? (await this.#read(group, seq));
          if (!event) {
            this.#finish(group, seq);
            continue;
          }
          group.events.set(seq, event);
          const [session, member] = best;
          if (!group.members.has(session)) {
            this.#requeue(group, seq);
            continue;
          }
          const deliveries = (group.deliveries.get(seq) ?? 0) + 1;
          if (deliveries > group.config.maxDeliver) {
            await this.#deadLetter(group, seq, "lease expired too many times");
            continue;
          }
          group.deliveries.set(seq, deliveries);
          member.inFlight++;
          this.#lease(group, seq, {
            member: session,
            agent: session.agent,
            deadline: this.now() + group.config.ackWaitMs,
          });
          this.#saveGroup(group);
          session.sendFrame({ type: "group.deliver", stream: group.stream.name, group: group.name, event, deliveries });
        }
      } while (group.again);
    } finally {
      group.dispatching = false;
    }
  }

  #saveGroup(group: Group): void {
    const record: GroupRecord = {
      config: group.config,
      floor: group.floor,
      done: [...group.done],
      deliveries: [...group.deliveries],
      leases: [...group.leases].map(([seq, lease]) => [seq, lease.agent, lease.deadline]),
      updatedAt: group.updatedAt,
    };
    this.#persist(grpKey(group.stream.name, group.name), record);
  }

  /** Coalesces position writes: one put per tick for all consumers and groups. */
  #persist(key: string, value: unknown): void {
    this.#dirty.set(key, value);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      const entries = Object.fromEntries(this.#dirty);
      this.#dirty.clear();
      this.#writing++;
      void putAll(this.storage, entries)
        .catch((error: unknown) => console.error("[crosstalk] consumer positions not stored", error))
        .finally(() => {
          this.#writing--;
          this.#trimPositions();
        });
    });
  }
}

/** Durable consumers' positions and consumer groups' membership, leases and acks. */
export const consumerModule = (
  consumers: Consumers,
): RoomModule<
  "consumer.get" | "consumer.ack" | "consumers.list" | "group.join" | "group.leave" | "group.ack" | "group.nak"
> => ({
  frames: {
    "consumer.get": async (_session, { stream, consumer }) => ({
      reply: { stream, consumer, acked: await consumers.position(stream, consumer) },
    }),
    "consumer.ack": (_session, frame) => consumers.ack(frame.stream, frame.consumer, frame.seq),
    "consumers.list": async (_session, { stream }) => ({ reply: { stream, ...(await consumers.list(stream)) } }),
    "group.join": (session, frame) => consumers.join(session, frame),
    "group.leave": (session, frame) => consumers.leave(session, frame.stream, frame.group),
    "group.ack": (session, frame) => consumers.groupAck(session, frame.stream, frame.group, frame.seq),
    "group.nak": (session, frame) => consumers.groupNak(session, frame),
  },
});
