/**
 * crosstalk: the isomorphic agent library (browsers, workerd, Node with a WebSocket).
 * Node 20 has no global WebSocket: import from `crosstalk/node` there.
 */
export { CrosstalkError, isCrosstalkError } from "./errors.ts";
export type { EventHandler, PublishOptions, PublishResult, SubscribeOptions, Subscription } from "./events.ts";
export { uuidv7 } from "./ids.ts";
export {
  type AgentInfo,
  CLOSE_CODES,
  ERROR_CODES,
  type ErrorCode,
  matchesPattern,
  PROTOCOL_VERSION,
  type StoredEvent,
} from "./protocol.ts";
export type { CallContext, CallOptions, Handler } from "./rpc.ts";
export { type Entity, type Json, Namespace, type StateChange } from "./state.ts";
export { type ConnectOptions, connect, Team } from "./team.ts";
export type { Status } from "./transport.ts";
