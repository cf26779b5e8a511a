/**
 * crosstalk for Node: the same client with the `ws` WebSocket (Node 20 has no global one).
 * Node-only extras (file persistence, the CLI) join this entry point, never the core.
 */
import WebSocket from "ws";
import { type ConnectOptions, connect as connectCore, type Team } from "./team.ts";

export * from "./index.ts";

/** `connect` with `ws` as the WebSocket unless one is given. */
export function connect(options: ConnectOptions): Promise<Team> {
  return connectCore({ WebSocket, ...options });
}
