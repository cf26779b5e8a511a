/**
 * What the real and the in-process test rooms have in common, so one test case can run
 * against either, and the agent bookkeeping both share.
 */
import { type ConnectOptions, connect, type Team } from "../client/node.ts";
import type { CuttableSocket } from "./cuttable.ts";

/** Options of `room.agent()`: anything `connect` takes; `team` defaults to `acme`, `role` to `agent`. */
export type AgentOptions = Partial<ConnectOptions>;

/** What a raw socket offers in both rooms: the browser WebSocket surface (`ws` has it too). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | ArrayBuffer | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  addEventListener(
    type: "open" | "message" | "close" | "error",
    // biome-ignore lint/suspicious/noExplicitAny: the two classes type their events differently
    listener: (event: any) => void,
    options?: { once?: boolean },
  ): void;
}

/** A room a test talks to: a real `partykit dev` (`startRoom`) or the in-process one (`createTestRoom`). */
export interface TestHost {
  /** What `connect({ host })` takes. */
  readonly host: string;
  /** A WebSocket class that reaches this room, for raw sockets (`new room.WebSocket(url)`); `agent()` uses it. */
  readonly WebSocket: new (
    url: string | URL,
    protocols?: string | string[],
  ) => WebSocketLike;
  /** A fresh team name, unique per call: tests sharing a room do not see each other. */
  team(prefix?: string): string;
  /** Connects an agent (closed when the room is disposed). */
  agent(agent: string, options?: AgentOptions): Promise<Team>;
  /** An HTTP request to the room, `path` relative to the origin (`/parties/main/<team>/metrics`). */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** A breakable network for one agent: pass its `WebSocket` to `agent()` or `connect()`. */
  cuttableSocket(): CuttableSocket;
  /** Kills the room without warning: nothing is flushed, every socket drops. */
  kill(): Promise<void>;
  /** Brings the room back over the same storage (killing it first if it still runs). */
  restart(): Promise<void>;
  /** Closes agents, stops the room, frees what it held. */
  [Symbol.asyncDispose](): Promise<void>;
}

import { TestKitError } from "./errors.ts";

/** A request path must be absolute (`/parties/main/acme`): anything else is a mistake in the test. */
export function checkPath(path: string): string {
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new TestKitError("INVALID_ARGUMENT", `fetch path must start with "/": ${JSON.stringify(path)}`);
  }
  return path;
}

let teamCounter = 0;

/** A team name unique in this process (and, with the pid, across test files sharing a persist directory). */
export const uniqueTeam = (prefix = "team"): string => `${prefix}-${process.pid}-${++teamCounter}`;

/**
 * Connects agents with a room's defaults and remembers them until they close, to close them all at disposal.
 * With `tokenFor`, each agent signs in with a token minted for it, again on every reconnect.
 */
export function agentPool(
  defaults: () => Pick<ConnectOptions, "host"> & AgentOptions,
  tokenFor?: (agent: string, role: string, options: { team: string }) => Promise<string>,
) {
  const agents = new Set<Team>();
  return {
    async agent(agent: string, options: AgentOptions = {}): Promise<Team> {
      const teamName = options.team ?? "acme";
      const role = options.role ?? "agent";
      const team = await connect({
        ...defaults(),
        team: teamName,
        agent,
        role,
        ...(tokenFor ? { token: () => tokenFor(agent, role, { team: teamName }) } : {}),
        ...options,
      });
      agents.add(team);
      // A closed agent is forgotten: a closed team still holds its documents (a big namespace
      // is hundreds of MB), and a long test or bench run opens many.
      const forget = (status: string) => {
        if (status !== "closed") return;
        agents.delete(team);
        team.off("status", forget);
      };
      team.on("status", forget);
      return team;
    },
    async closeAll(): Promise<void> {
      await Promise.all([...agents].map((a) => a.close()));
      agents.clear();
    },
  };
}
