/**
 * The team's policy, stored in room storage (`policy` → {@link StoredPolicy}) so changing it
 * needs no deploy: an agent with `policy.admin` reads it with `policy.get` (or
 * `GET …/<team>/policy`) and replaces it with `policy.set`. Until one is stored, the team has
 * the project's default (`default-policy.ts`).
 *
 * It also computes each principal's effective permissions ({@link TeamPolicy.bind}), which
 * `policy.ts` decides from. A change takes effect for live sessions at once: the room
 * recomputes every session's grants and withdraws what they lost (`room.ts`).
 */
import {
  type DocName,
  Grants,
  type Policy,
  PolicyError,
  parsePolicy,
  permissionsOf,
  type RoomFrameOf,
} from "../protocol/index.ts";
import type { Consumers } from "./consumers.ts";
import { defaultPolicy } from "./default-policy.ts";
import type { DocHub } from "./docs.ts";
import type { Outcome, RoomModule } from "./handlers.ts";
import { keys } from "./keys.ts";
import { authorize, canReadPattern } from "./policy.ts";
import type { Presence } from "./presence.ts";
import type { Session } from "./session.ts";
import type { KvStorage } from "./storage.ts";

/** What storage holds, and `policy` frames carry. */
export type StoredPolicy = Omit<RoomFrameOf<"policy">, "type" | "ref">;

/** The most a stored policy may take (one storage value is at most 128 KiB). */
export const MAX_POLICY_BYTES = 100_000;

/**
 * What the room falls back to when the stored policy cannot be read (corrupt storage):
 * nothing for anyone but an admin, who may read and replace it. Fail closed.
 */
const BROKEN: Policy = { roles: { admin: { allow: ["policy.admin"], deny: [] } } };

export class TeamPolicy {
  #stored: StoredPolicy;
  #loading: Promise<void> | null = null;
  #loaded = false;
  /** `policy.set`s one at a time, so `expectedRev` means what it says. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly options: {
      team: string;
      storage: KvStorage;
      now: () => number;
      /** The policy changed (set, or loaded from storage): recompute live sessions' grants. */
      changed: () => void;
      /** An admin replaced the policy (the room audits it). */
      replaced?: (stored: StoredPolicy) => void;
    },
  ) {
    const parsed = parsePolicy(defaultPolicy);
    if (!parsed.ok) throw parsed.error; // The project's own default: a bug to ship it broken.
    this.#stored = { policy: parsed.policy, rev: 0 };
  }

  /**
   * Loads the stored policy (once); until it has, the default applies and frames wait
   * (`dispatch.ts`). A failed read is not kept: the next caller reads again, or one storage
   * hiccup at start would fail every frame and request of the room for good.
   */
  load(): Promise<void> {
    this.#loading ??= this.#load().catch((error: unknown) => {
      this.#loading = null;
      throw error;
    });
    return this.#loading;
  }

  /** Null once loaded; otherwise the load to wait for. */
  ready(): Promise<void> | null {
    return this.#loaded ? null : this.load();
  }

  async #load(): Promise<void> {
    const raw = await this.options.storage.get<StoredPolicy>(keys.policy);
    this.#loaded = true;
    if (raw === undefined) return;
    const parsed = parsePolicy(raw?.policy);
    if (parsed.ok && Number.isInteger(raw.rev)) {
      this.#stored = { ...raw, policy: parsed.policy };
    } else {
      console.error(
        `[crosstalk ${this.options.team}] the stored policy is unreadable; only admins may act until it is replaced`,
      );
      this.#stored = { policy: BROKEN, rev: Number.isInteger(raw?.rev) ? raw.rev : 0 };
    }
    this.options.changed();
  }

  current(): StoredPolicy {
    return this.#stored;
  }

  /** The effective permissions of `who` under the current policy (role rules ∩ token scope, `{sub}` bound). */
  bind(who: { agent: string; role: string; scope?: readonly string[] }): Grants {
    return new Grants(permissionsOf(this.#stored.policy, who));
  }

  /** `policy.set`: validated, stored, then applied to every live session; answered with the stored policy. */
  set(input: unknown, by: string, expectedRev?: number): Promise<Outcome<"policy.set">> {
    const run = this.#queue.then(async (): Promise<Outcome<"policy.set">> => {
      await this.load();
      const parsed = parsePolicy(input);
      if (!parsed.ok) return { error: parsed.error.toBody() };
      if (expectedRev !== undefined && expectedRev !== this.#stored.rev) {
        return {
          error: {
            code: "CONFLICT",
            message: `the policy is at revision ${this.#stored.rev}, not ${expectedRev}; nothing was changed`,
            details: { rev: this.#stored.rev },
          },
        };
      }
      const next: StoredPolicy = {
        policy: parsed.policy,
        rev: this.#stored.rev + 1,
        updatedAt: this.options.now(),
        updatedBy: by,
      };
      const bytes = new TextEncoder().encode(JSON.stringify(next)).byteLength;
      if (bytes > MAX_POLICY_BYTES) {
        return {
          error: { code: "TOO_LARGE", message: `the policy is ${bytes} bytes; the limit is ${MAX_POLICY_BYTES}` },
        };
      }
      await this.options.storage.put({ [keys.policy]: next });
      this.#stored = next;
      this.options.changed();
      this.options.replaced?.(next);
      return { reply: next };
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** A backup's policy, stored exactly as it was (revision included): `backup.ts` restores with it. */
  restore(stored: StoredPolicy): Promise<void> {
    const run = this.#queue.then(async () => {
      await this.load();
      const parsed = parsePolicy(stored?.policy);
      if (!parsed.ok || !Number.isInteger(stored.rev))
        throw parsed.ok ? new PolicyError([{ path: "rev", message: "not an integer" }]) : parsed.error;
      const next: StoredPolicy = { ...stored, policy: parsed.policy };
      await this.options.storage.put({ [keys.policy]: next });
      this.#stored = next;
      this.options.changed();
    });
    this.#queue = run.catch(() => {});
    return run;
  }
}

/** `policy.get` / `policy.set`, and `GET …/<team>/policy`; `policy.ts` lets only `policy.admin` through. */
export const policyModule = (policy: TeamPolicy): RoomModule<"policy.get" | "policy.set"> => ({
  frames: {
    "policy.get": async () => {
      await policy.load();
      return { reply: policy.current() };
    },
    "policy.set": (session, frame) => policy.set(frame.policy, session.agent, frame.expectedRev),
  },
  routes: [
    {
      path: "policy",
      handle: async () => {
        await policy.load();
        return Response.json(policy.current());
      },
    },
  ],
});

/**
 * The policy changed: every live session gets its new permissions (a `permissions` frame),
 * and loses at once what it may no longer have — documents it may no longer read stop
 * syncing (with a FORBIDDEN `error` naming them), methods it may no longer serve leave the
 * roster, group memberships whose pattern it may no longer read end. Feeds check every
 * event as they send it, so they need nothing here.
 */
export function applyPolicy(room: {
  sessions: Iterable<Session>;
  policy: TeamPolicy;
  hub: DocHub;
  presence: Presence;
  consumers: Consumers;
}): void {
  for (const session of room.sessions) {
    session.grants = room.policy.bind(session);
    session.sendFrame({ type: "permissions", permissions: session.grants.permissions });
    for (const doc of [...session.docs] as DocName[]) {
      const denied = authorize(session, "read", { doc });
      if (!denied) continue;
      room.hub.close(session, doc);
      session.sendFrame({
        type: "error",
        doc,
        error: { ...denied, message: `${doc} may no longer be read: ${denied.message}` },
      });
    }
    const methods = session.methods.filter((m) => session.grants?.permits("rpc.serve", m));
    if (methods.length !== session.methods.length) {
      session.methods = methods;
      room.presence.changed(session);
    }
    room.consumers.revoke(session, (stream, pattern) => canReadPattern(session, stream, pattern));
  }
}
