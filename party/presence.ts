/**
 * The roster: which agents are connected, in which role, since when, with what status and
 * which methods they serve. The room owns it; clients only receive it.
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

export class Presence {
  /** The live session of each agent id. */
  readonly #byAgent = new Map<string, Session>();

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

  #broadcast(op: "join" | "leave" | "update", session: Session): void {
    const text = JSON.stringify({ type: "presence", op, agent: agentInfo(session) });
    // The agent itself learns its own join from `welcome`, and its status changes from itself.
    for (const s of this.#byAgent.values()) if (s !== session || op === "update") s.sendText(text);
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
