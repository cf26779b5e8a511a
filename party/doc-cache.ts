/**
 * Which of the room's documents stay in memory. A room that never goes idle would otherwise
 * keep every document it ever opened: a namespace read once, a stream published to an hour
 * ago. A document nobody syncs (no subscriber socket), with nothing waiting to be stored and
 * untouched for `idleMs`, is unloaded: the hub forgets its Y.Doc (its encoded state is in
 * storage already — nothing is pending or in flight), and the next sync, write or read loads
 * it again (`DocHub.open`). Modules holding state built on a document say when it must stay
 * ({@link IdleDocs.holds}: a stream with live feeds or groups) and drop that state when it
 * goes ({@link IdleDocs.unloaded}).
 *
 * No timer: sweeps ride on the room's activity (any frame or request, at most one sweep per
 * `idleMs / 2`), so a hibernating host is never kept awake by them — and an idle room drops
 * everything on its own when it hibernates.
 */
import type { DocHub, HubDoc } from "./docs.ts";

export type IdleOptions = {
  /** How long a document nobody syncs stays loaded after its last use. */
  idleMs: number;
  now: () => number;
};

/** Default {@link IdleOptions.idleMs}: long enough that a namespace in use is not reloaded per call. */
export const DEFAULT_DOC_IDLE_MS = 30_000;

export class IdleDocs {
  /** Each says whether a document must stay loaded (true: keep it). */
  readonly holds = new Set<(doc: HubDoc) => boolean>();
  /** Called for each document unloaded, to drop what was built on it. */
  readonly unloaded = new Set<(doc: HubDoc) => void>();
  /** Documents unloaded since the room started. */
  count = 0;
  #lastSweep: number;

  constructor(
    private readonly hub: DocHub,
    private readonly options: IdleOptions,
  ) {
    this.#lastSweep = options.now();
  }

  /** `doc` was used now; now and then, unloads the documents that were not for a while. */
  touch(doc: HubDoc): void {
    doc.usedAt = this.options.now();
    this.tick();
  }

  /** The room is busy (any frame or request): sweeps if the last sweep is `idleMs / 2` old. */
  tick(): void {
    if (this.options.now() - this.#lastSweep >= this.options.idleMs / 2) this.sweep();
  }

  /** Unloads every document idle for `idleMs` that nothing holds. Returns how many. */
  sweep(): number {
    const now = this.options.now();
    this.#lastSweep = now;
    let n = 0;
    for (const doc of [...this.hub.all()]) {
      if (now - doc.usedAt < this.options.idleMs || doc.subscribers.size > 0) continue;
      if ([...this.holds].some((held) => held(doc))) continue;
      if (!this.hub.unload(doc)) continue;
      n++;
      for (const listener of this.unloaded) listener(doc);
    }
    this.count += n;
    return n;
  }
}

/** `CROSSTALK_DOC_IDLE_MS` (a positive integer) as the room's `docIdleMs`; anything else: the default. */
export function docIdleFromEnv(env: Record<string, unknown>): { docIdleMs?: number } {
  const ms = Number(env.CROSSTALK_DOC_IDLE_MS);
  return Number.isSafeInteger(ms) && ms > 0 ? { docIdleMs: ms } : {};
}
