/**
 * Projections: a namespace kept in step with a stream (the stream is the source of truth,
 * the namespace a materialized view).
 *
 * It runs in an agent, not in the room: `reduce` is the team's own code, which the room
 * cannot run without a deploy, and an agent can use any library. One agent at a time runs a
 * projection (it holds the lease `projection:<ns>:<name>`; others wait and take over when
 * it dies). Each event is applied in one Yjs transaction together with the projection's
 * last applied seq (`projections` map of the namespace), so the write and the position
 * reach the room as one update: after a crash the position says exactly what was applied,
 * and no event is applied twice or skipped.
 */
import { matchesPattern as matches, projectionsMap, type StoredEvent } from "../protocol/index.ts";
import type { Subscription } from "./events.ts";
import type { Entity, Namespace } from "./state.ts";

export type ProjectionOptions<T extends Entity> = {
  /** Names the projection (default: the namespace name). */
  name?: string;
  stream?: string;
  /** Type patterns to apply (default: all). */
  types?: string[];
  into: Namespace<T>;
  /** The entity an event changes (default: the event's `key`); undefined skips the event. */
  key?: (event: StoredEvent) => string | undefined;
  /** The entity's next value, or undefined to delete it. */
  reduce: (entity: T | undefined, event: StoredEvent) => T | undefined;
};

export type Projection = {
  /** Resolves once this agent runs the projection (holds its lease). */
  readonly running: Promise<void>;
  /** The seq of the last event applied, as stored in the namespace. */
  readonly lastSeq: number;
  /** Clears the namespace and applies the whole history again. */
  rebuild(): Promise<void>;
  stop(): Promise<void>;
};

/** What a projection needs from its team. */
export type ProjectionHost = {
  subscribe(
    pattern: string,
    handler: (e: StoredEvent) => unknown,
    options: { stream: string; from: number },
  ): Subscription;
  acquire(name: string): Promise<{ lost: Promise<string>; release(): Promise<void> }>;
  /**
   * Tells the room how far the projection has read, under the durable consumer name
   * `projection:<ns>:<name>`, so the stream's retention never removes what it has not applied.
   */
  hold?(stream: string, consumer: string, seq: number): void;
};

export function startProjection<T extends Entity>(host: ProjectionHost, options: ProjectionOptions<T>): Projection {
  const ns = options.into;
  const name = options.name ?? ns.name;
  const stream = options.stream ?? "main";
  const patterns = options.types ?? [">"];
  const keyOf = options.key ?? ((e: StoredEvent) => e.key);
  // Looked up on every use: a refused write or a rebase puts a fresh document behind the namespace.
  const positions = {
    get: (n: string) => projectionsMap(ns.doc).get(n),
    set: (n: string, seq: number) => projectionsMap(ns.doc).set(n, seq),
  };
  let subs: Subscription[] = [];
  let stopped = false;
  let lease: { lost: Promise<string>; release(): Promise<void> } | null = null;

  const apply = (event: StoredEvent) => {
    if (stopped || event.seq <= (positions.get(name) ?? 0)) return;
    ns.transact(() => {
      const key = keyOf(event);
      if (key !== undefined) {
        const next = options.reduce(ns.get(key), event);
        if (next === undefined) ns.delete(key);
        else ns.set(key, next);
      }
      positions.set(name, event.seq);
    });
  };

  const holdName = `projection:${ns.name}:${name}`.slice(0, 128);
  const subscribe = () => {
    const from = (positions.get(name) ?? 0) + 1;
    host.hold?.(stream, holdName, from - 1);
    // One subscription per pattern would interleave out of order; filter in one instead.
    subs = [
      host.subscribe(
        ">",
        // Other types are skipped without a write: recording their seq would cost a Yjs update
        // (a frame and a stored record) per unrelated event; after a restart they are skipped again.
        (e) => {
          if (patterns.some((p) => matches(p, e.type))) apply(e);
          host.hold?.(stream, holdName, e.seq);
        },
        { stream, from },
      ),
    ];
  };

  const run = async (): Promise<void> => {
    await ns.ready;
    lease = await host.acquire(`projection:${ns.name}:${name}`);
    if (stopped) return;
    subscribe();
    await Promise.all(subs.map((s) => s.ready));
    // Lost the lease (e.g. a long network cut): stop applying, and queue up to run again.
    void lease.lost.then((reason) => {
      for (const s of subs) s.unsubscribe();
      subs = [];
      if (!stopped && reason !== "closed" && reason !== "released") run().catch(() => {});
    });
  };
  const running = run();
  // Awaited by whoever cares; a closed team must not surface as an unhandled rejection.
  running.catch(() => {});

  return {
    running,
    get lastSeq() {
      return positions.get(name) ?? 0;
    },
    async rebuild() {
      await running;
      for (const s of subs) s.unsubscribe();
      ns.transact(() => {
        for (const key of ns.keys()) ns.delete(key);
        positions.set(name, 0);
      });
      subscribe();
      await Promise.all(subs.map((s) => s.ready));
    },
    async stop() {
      stopped = true;
      for (const s of subs) s.unsubscribe();
      await lease?.release();
    },
  };
}
