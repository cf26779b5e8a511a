/**
 * The roster: which agents are connected, in which role, since when, with what status and
 * which methods they serve. The room owns it; clients only receive it.
 *
 * Changes are coalesced: what changes within one tick ({@link PRESENCE_TICK_MS}) goes to
 * every agent as one frame (`presence`, or `presence.batch` for several), so 1,000 agents
 * joining within a second cost a few frames per agent rather than 1,000 each.
 */
import type { AgentInfo } from "../protocol/index.ts";
import type { RoomModule } from "./handlers.ts";
import type { Session } from "./session.ts";

export const agentInfo = (s: Session): AgentInfo => ({
  agent: s.agent,
  role: s.role,
  connectedAt: s.connectedAt,
  status: s.status,
  methods: s.methods,
  ...(s.methodInfo ? { info: s.methodInfo } : {}),
});

/** How long roster changes collect before they go out together. */
export const PRESENCE_TICK_MS = 50;

type Change = { op: "join" | "leave" | "update"; session: Session; agent: AgentInfo };

export class Presence {
  /** The live session of each agent id. */
  readonly #byAgent = new Map<string, Session>();
  /** Changes of this tick, in order, sent together when it ends. */
  #changes: Change[] = [];
  #tick: ReturnType<typeof setTimeout> | null = null;
  /** Sessions admitted this tick, and where their own join is in `#changes`: their welcome showed everything before it. */
  #admitted = new Map<Session, number>();

  get(agent: string): Session | undefined {
    return this.#byAgent.get(agent);
  }

  sessions(): IterableIterator<Session> {
    return this.#byAgent.values();
  }

  get size(): number {
    return this.#byAgent.size;
  }

  roster(): AgentInfo[] {
    return [...this.#byAgent.values()].map(agentInfo);
  }

  /**
   * Admits `session`. The same instance reconnecting replaces its older socket, which is
   * returned for closing; so is another instance's session with `takeover` (signed
   * identities: the newest connection wins). Without it, an agent id already held by another
   * client instance is refused.
   */
  admit(session: Session, { takeover = false } = {}): { ok: true; replaced?: Session } | { ok: false } {
    const current = this.#byAgent.get(session.agent);
    if (current && current.instance !== session.instance && !takeover) return { ok: false };
    this.#byAgent.set(session.agent, session);
    this.#admitted.set(session, this.#changes.length);
    this.#broadcast("join", session);
    return { ok: true, replaced: current };
  }

  /**
   * Puts a session back on the roster after a hibernation wake, without announcing it: its
   * peers' rosters still list it (they never saw it leave).
   */
  restore(session: Session): void {
    this.#byAgent.set(session.agent, session);
  }

  /** Removes `session` if it is still the agent's live session; false for a replaced one. */
  remove(session: Session): boolean {
    if (this.#byAgent.get(session.agent) !== session) return false;
    this.#byAgent.delete(session.agent);
    this.#broadcast("leave", session);
    return true;
  }

  changed(session: Session): void {
    if (this.#byAgent.get(session.agent) === session) this.#broadcast("update", session);
  }

  #broadcast(op: Change["op"], session: Session): void {
    // Taken now: a session's status and methods may change again before the tick ends.
    const change: Change = { op, session, agent: agentInfo(session) };
    const last = this.#changes.at(-1);
    if (op === "update" && last?.op === "update" && last.session === session)
      this.#changes[this.#changes.length - 1] = change;
    else this.#changes.push(change);
    if (this.#byAgent.size === 0) {
      // Nobody left to tell: no frame, and no timer holding the room awake.
      this.#changes = [];
      this.#admitted.clear();
      if (this.#tick) clearTimeout(this.#tick);
      this.#tick = null;
      return;
    }
    this.#tick ??= setTimeout(() => this.#flush(), PRESENCE_TICK_MS);
  }

  #flush(): void {
    const changes = this.#changes;
    const admitted = this.#admitted;
    this.#changes = [];
    this.#admitted = new Map();
    this.#tick = null;
    const frameOf = (list: Change[]): string | null => {
      const only = list.length === 1 ? list[0] : undefined;
      if (only) return JSON.stringify({ type: "presence", op: only.op, agent: only.agent });
      if (list.length === 0) return null;
      return JSON.stringify({ type: "presence.batch", changes: list.map(({ op, agent }) => ({ op, agent })) });
    };
    const shared = frameOf(changes);
    for (const s of this.#byAgent.values()) {
      const at = admitted.get(s);
      // A session admitted this tick saw everything before its join in its `welcome`, and its
      // own join there too; its later status changes it gets, as before.
      const text =
        at === undefined ? shared : frameOf(changes.slice(at + 1).filter((c) => c.session !== s || c.op === "update"));
      if (text) s.pushText(text);
    }
  }
}

/** An agent's own status fields, and the roster over HTTP (`GET …/<team>/agents`). */
export const presenceModule = (presence: Presence): RoomModule<"presence.set"> => ({
  frames: {
    "presence.set": (session, frame) => {
      session.status = frame.status;
      presence.changed(session);
    },
  },
  routes: [{ path: "agents", handle: () => Response.json(presence.roster()) }],
});
