/**
 * Hosts one demo agent wherever it runs (Node, a worker, a browser tab): connects it, runs its
 * pipeline role, and lets the team crash it on purpose (`demo.crash`) to show healing.
 *
 * A crash is abrupt, as when a process dies: the agent's raw socket is dropped (no goodbye, no
 * lease given back, no group left), the `Team` is abandoned, and after `restartAfterMs` a fresh
 * one connects under the same id — its durable consumers resume where the room kept them, and
 * the group leases it held have gone to the other members meanwhile. The raw sockets are seen
 * through the client's public `WebSocket` option (a subclass that remembers its instances).
 */
import type { ConnectOptions, Team } from "../../client/index.ts";
import { type AgentOptions, type Role, runRole } from "./pipeline.ts";

// biome-ignore lint/suspicious/noExplicitAny: any WebSocket constructor (browser, workerd, `ws`).
type SocketClass = new (...args: any[]) => { close(code?: number, reason?: string): void };

export type HostOptions = {
  /** `connect` from `crosstalk` (browser, workerd) or `crosstalk/node`. */
  connect: (options: ConnectOptions) => Promise<Team>;
  /** Where and how to connect; `agent`, `role` and `WebSocket` are filled in here. */
  base: Omit<ConnectOptions, "agent" | "role" | "WebSocket">;
  WebSocket: SocketClass;
  /**
   * Drops a raw socket without a goodbye (default: `close(4000)`). A bare TCP drop (`ws`'s
   * `terminate()`) is not noticed by the room under `partykit dev` until the agent reconnects
   * and takes its id over, so the page could not show the agent going down.
   */
  kill?: (socket: InstanceType<SocketClass>) => void;
  agent: string;
  role: Role;
  agentOptions: AgentOptions;
  /** How long a crashed agent stays down (default 4 s). */
  restartAfterMs?: number;
  /** Told whenever the agent comes up, crashes or stops (for logs and the page). */
  onChange?: (state: "up" | "crashed" | "stopped", team: Team | null) => void;
};

export class HostedAgent {
  #team: Team | null = null;
  #stopRole: (() => void) | null = null;
  #sockets = new Set<InstanceType<SocketClass>>();
  #restart: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  readonly #Tracked: SocketClass;

  constructor(readonly options: HostOptions) {
    const sockets = this.#sockets;
    this.#Tracked = class extends options.WebSocket {
      // biome-ignore lint/suspicious/noExplicitAny: forwarded as given.
      constructor(...args: any[]) {
        super(...args);
        sockets.add(this);
      }
    };
  }

  get team(): Team | null {
    return this.#team;
  }

  get agent(): string {
    return this.options.agent;
  }

  /** Connects and starts the role; resolves once online. */
  async start(): Promise<Team> {
    const { connect, base, agent, role, agentOptions } = this.options;
    const team = await connect({ ...base, agent, role, WebSocket: this.#Tracked });
    if (this.#stopped) {
      await team.close();
      return team;
    }
    this.#team = team;
    this.#stopRole = runRole(team, role, agentOptions);
    team.handle("demo.crash", (input) => {
      // `downMs` (1–60 s) keeps it down longer than usual, e.g. to let a human stand in.
      const asked = Number((input as { downMs?: unknown } | null)?.downMs);
      const downMs = Number.isFinite(asked) ? Math.min(Math.max(asked, 1000), 60_000) : this.#restartAfterMs;
      // Answer first, then die: the caller learns the crash was ordered.
      setTimeout(() => this.crash(downMs), 50);
      return { crashing: agent, restartInMs: downMs };
    });
    this.options.onChange?.("up", team);
    return team;
  }

  get #restartAfterMs(): number {
    return this.options.restartAfterMs ?? 4000;
  }

  /** Drops the agent abruptly and brings it back after `downMs` (default `restartAfterMs`). */
  crash(downMs = this.#restartAfterMs): void {
    const team = this.#team;
    if (!team) return;
    this.#team = null;
    const kill = this.options.kill ?? ((s) => s.close(4000, "agent crashed"));
    for (const socket of this.#sockets) {
      try {
        kill(socket);
      } catch {
        // Already closed.
      }
    }
    this.#sockets.clear();
    // Once the socket is gone the team is offline: closing it then sends nothing (no goodbye)
    // and stops it reconnecting; the role's timers go with it.
    const abandon = () => {
      void team.close();
      this.#stopRole?.();
      this.#stopRole = null;
    };
    if (team.status !== "online") abandon();
    else {
      const onStatus = () => {
        if (team.status === "online") return;
        team.off("status", onStatus);
        abandon();
      };
      team.on("status", onStatus);
    }
    this.options.onChange?.("crashed", null);
    this.#restart = setTimeout(() => void this.#restartLoop(), downMs);
  }

  async #restartLoop(): Promise<void> {
    while (!this.#stopped && !this.#team) {
      try {
        await this.start();
      } catch (error) {
        this.options.agentOptions.onError?.(error);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Stops for good, leaving the team cleanly. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#restart);
    this.#stopRole?.();
    this.#stopRole = null;
    const team = this.#team;
    this.#team = null;
    await team?.close();
    this.options.onChange?.("stopped", null);
  }
}
