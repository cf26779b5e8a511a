/**
 * Leases: a named claim held by one agent at a time ("only one agent works on DEAL-001").
 * A lease lasts `ttlMs` unless renewed; it survives its holder's disconnect until then, so a
 * brief network cut does not hand the work to someone else. Every grant gets a larger
 * `token` (a fencing token). Stored as `lease|<name>`, so a restarted room still refuses
 * others until expiry; expiry notifies the former holder with `lease.lost` when it is online.
 * Expiry is a deadline on the room's alarm schedule, re-armed from storage after a wake
 * ({@link Leases.resume}), so a held lease does not keep the room awake.
 */
import type { ClientFrame } from "../protocol/index.ts";
import type { Alarms } from "./alarms.ts";
import type { RoomContext } from "./context.ts";
import type { Outcome, RoomModule } from "./handlers.ts";
import { keys } from "./keys.ts";
import type { Presence } from "./presence.ts";
import type { Session } from "./session.ts";
import type { KvStorage } from "./storage.ts";

type LeaseRecord = { holder: string; token: number; expiresAt: number };

export class Leases {
  readonly #cache = new Map<string, LeaseRecord | null>();
  /** Per lease name, so concurrent requests are decided one at a time. */
  readonly #queue = new Map<string, Promise<unknown>>();

  private readonly storage: KvStorage;
  private readonly presence: Presence;
  private readonly now: () => number;
  private readonly alarms: Alarms;

  constructor(ctx: RoomContext) {
    ({ storage: this.storage, presence: this.presence, now: this.now, alarms: this.alarms } = ctx);
  }

  /** After a wake or restart: every stored lease's expiry back on the alarm schedule. */
  async resume(): Promise<void> {
    for (const [key, record] of await this.storage.list<LeaseRecord>({ prefix: keys.lease("") })) {
      const name = key.slice(keys.lease("").length);
      if (!this.#cache.has(name)) this.#cache.set(name, record);
      this.#arm(name, record);
    }
  }

  #arm(name: string, record: LeaseRecord): void {
    this.alarms.at(`lease|${name}`, record.expiresAt, () => void this.#expire(name, record.token));
  }

  #serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.#queue.get(name) ?? Promise.resolve()).then(fn, fn);
    this.#queue.set(
      name,
      run.catch(() => {}),
    );
    return run;
  }

  /** The stored record, expired or not. */
  async #raw(name: string): Promise<LeaseRecord | null> {
    if (!this.#cache.has(name)) this.#cache.set(name, (await this.storage.get<LeaseRecord>(keys.lease(name))) ?? null);
    return this.#cache.get(name) ?? null;
  }

  /** The record if it is still in force. */
  async #read(name: string): Promise<LeaseRecord | null> {
    const record = await this.#raw(name);
    return record && record.expiresAt > this.now() ? record : null;
  }

  async #write(name: string, record: LeaseRecord | null): Promise<void> {
    if (record) await this.storage.put({ [keys.lease(name)]: record });
    else await this.storage.delete([keys.lease(name)]);
    this.#cache.set(name, record);
    if (record) this.#arm(name, record);
    else this.alarms.cancel(`lease|${name}`);
  }

  #expire(name: string, token: number): Promise<void> {
    return this.#serial(name, async () => {
      const record = this.#cache.get(name);
      if (!record || record.token !== token) return;
      await this.#write(name, null);
      // Keep the token so the next grant still gets a larger one.
      await this.storage.put({ [keys.leaseToken(name)]: token });
      this.presence.get(record.holder)?.sendFrame({ type: "lease.lost", name, token });
    });
  }

  acquire(session: Session, frame: Extract<ClientFrame, { type: "lease.acquire" }>): Promise<Outcome<"lease.acquire">> {
    return this.#serial(frame.name, async () => {
      const current = await this.#read(frame.name);
      if (current && current.holder !== session.agent) {
        return {
          error: {
            code: "CONFLICT",
            message: `lease ${frame.name} is held by ${current.holder}`,
            details: { holder: current.holder, expiresAt: current.expiresAt },
          },
        };
      }
      // Fencing tokens only grow: past the last grant, whether it expired, was released or still holds.
      const raw = await this.#raw(frame.name);
      const last = Math.max(raw?.token ?? 0, (await this.storage.get<number>(keys.leaseToken(frame.name))) ?? 0);
      const record = { holder: session.agent, token: last + 1, expiresAt: this.now() + frame.ttlMs };
      await this.#write(frame.name, record);
      return { reply: { name: frame.name, token: record.token, expiresAt: record.expiresAt } };
    });
  }

  renew(session: Session, frame: Extract<ClientFrame, { type: "lease.renew" }>): Promise<Outcome<"lease.renew">> {
    return this.#serial(frame.name, async () => {
      const current = await this.#read(frame.name);
      if (!current || current.holder !== session.agent || current.token !== frame.token) {
        return { error: { code: "CONFLICT", message: `lease ${frame.name} (token ${frame.token}) is no longer held` } };
      }
      const record = { ...current, expiresAt: this.now() + frame.ttlMs };
      await this.#write(frame.name, record);
      return { reply: { name: frame.name, token: record.token, expiresAt: record.expiresAt } };
    });
  }

  /** Gives the lease back if this session's agent holds it with this token; answered `ok` either way. */
  release(session: Session, frame: Extract<ClientFrame, { type: "lease.release" }>): Promise<Outcome<"lease.release">> {
    return this.#serial(frame.name, async () => {
      const current = await this.#read(frame.name);
      if (current && current.holder === session.agent && current.token === frame.token) {
        await this.#write(frame.name, null);
        await this.storage.put({ [keys.leaseToken(frame.name)]: current.token });
      }
      return { reply: {} };
    });
  }
}

export const leaseModule = (leases: Leases): RoomModule<"lease.acquire" | "lease.renew" | "lease.release"> => ({
  frames: {
    "lease.acquire": (session, frame) => leases.acquire(session, frame),
    "lease.renew": (session, frame) => leases.renew(session, frame),
    "lease.release": (session, frame) => leases.release(session, frame),
  },
});
