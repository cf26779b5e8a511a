/**
 * One agent instance per browser tab. The instance id (what the room numbers a durable outbox
 * by, `connect({ instance })`) must survive a reload, so the reloaded tab finds and flushes its
 * own outbox, and must differ in a duplicated tab, which copies `sessionStorage` but is a
 * second live producer:
 *
 * - the id lives in `sessionStorage` (kept across reloads, per tab);
 * - the tab holds a Web Lock named after it for as long as the page lives; finding the lock
 *   already held means another live tab owns the id (a duplicate), so this tab mints a fresh one;
 * - every id ever claimed for the team and agent is listed in `localStorage`; one whose lock
 *   nobody holds belongs to a closed tab, whose outbox a live tab may flush (`orphans`, which
 *   takes the orphan's lock so one tab adopts it; were two to flush it anyway, the room drops
 *   a resent outbox number).
 *
 * Browser-only APIs, reached through `globalThis` and injectable for tests; isomorphic to import.
 */
import { CrosstalkError, uuidv7 } from "../protocol/index.ts";

type KeyValue = Pick<Storage, "getItem" | "setItem">;
type Locks = Pick<LockManager, "request">;

export type TabInstanceOptions = {
  team: string;
  agent: string;
  /** Defaults: the page's `sessionStorage`, `localStorage` and `navigator.locks`. */
  sessionStorage?: KeyValue;
  localStorage?: KeyValue;
  locks?: Locks;
};

export type TabInstance = {
  /** This tab's instance id: pass it to `connect({ instance })` and to the tab's storage. */
  readonly id: string;
  /** True when the id was minted here (first load, or a duplicated tab), false after a reload. */
  readonly fresh: boolean;
  /**
   * Instance ids of closed tabs of this team and agent, oldest first, each now locked by this
   * tab so no other tab adopts it too. Flush one before connecting this tab's own instance (two
   * live connections of one agent take each other over): connect with its id and its storage,
   * wait for `flushed`, close, delete its storage, then `forget` it (or `release` it to leave
   * it for later).
   */
  orphans(): Promise<{ id: string; release(): void }[]>;
  /** Takes `id` off the list (its outbox is empty, its storage deleted). */
  forget(id: string): void;
  /** Gives the id up (the tab stays open but leaves the team). */
  release(): void;
};

const lockName = (team: string, agent: string, id: string) => `crosstalk/${team}/${agent}/instance/${id}`;

/** Claims this tab's agent instance id: the one it had before a reload, else a new one. */
export async function claimTabInstance(options: TabInstanceOptions): Promise<TabInstance> {
  const g = globalThis as { sessionStorage?: KeyValue; localStorage?: KeyValue; navigator?: { locks?: Locks } };
  const session = options.sessionStorage ?? g.sessionStorage;
  const local = options.localStorage ?? g.localStorage;
  const locks = options.locks ?? g.navigator?.locks;
  if (!session || !local || !locks)
    throw new CrosstalkError("INVALID_ARGUMENT", "tab instances need sessionStorage, localStorage and Web Locks");
  const { team, agent } = options;
  const idKey = `crosstalk/${team}/${agent}/instance`;
  const listKey = `crosstalk/${team}/${agent}/instances`;

  const hold = async (id: string): Promise<(() => void) | null> => {
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const got = await new Promise<boolean>((resolve, reject) => {
      locks
        .request(lockName(team, agent, id), { ifAvailable: true }, (lock) => {
          resolve(lock !== null);
          // Held until released (or the page goes away, which frees it).
          return lock ? held : undefined;
        })
        .catch(reject);
    });
    return got ? release : null;
  };

  const list = (): string[] => {
    try {
      const parsed = JSON.parse(local.getItem(listKey) ?? "[]");
      return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === "string") : [];
    } catch {
      return [];
    }
  };
  const save = (ids: string[]) => local.setItem(listKey, JSON.stringify(ids));

  let id = session.getItem(idKey);
  let fresh = false;
  let release = id ? await hold(id) : null;
  if (!id || !release) {
    // First load of this tab, or a duplicate whose copied id a live tab holds.
    id = uuidv7();
    fresh = true;
    release = await hold(id);
    if (!release) throw new CrosstalkError("CONFLICT", "a fresh instance id is already locked");
    session.setItem(idKey, id);
  }
  const mine = id;
  if (!list().includes(mine)) save([...list(), mine]);
  const unlock = release;

  return {
    id: mine,
    fresh,
    async orphans() {
      const adopted: { id: string; release(): void }[] = [];
      for (const other of list()) {
        if (other === mine) continue;
        const released = await hold(other);
        if (released) adopted.push({ id: other, release: released });
      }
      return adopted;
    },
    forget(other: string) {
      save(list().filter((x) => x !== other));
    },
    release: unlock,
  };
}
