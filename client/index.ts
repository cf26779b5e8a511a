/**
 * crosstalk: the isomorphic agent library (browsers, workerd, Node with a WebSocket).
 * Node 20 has no global WebSocket: import from `crosstalk/node` there.
 */
export { defineEvents, type EventCatalog, type EventSpec } from "./catalog.ts";
export {
  type Contract,
  type ContractClient,
  type ContractHandlers,
  defineContract,
  type MethodSpec,
} from "./contract.ts";
export { CrosstalkError, isCrosstalkError } from "./errors.ts";
export type {
  EventHandler,
  HistoryOptions,
  LiveSubscription,
  PublishOptions,
  PublishResult,
  SubscribeOptions,
  Subscription,
} from "./events.ts";
export { uuidv7 } from "./ids.ts";
export { Lease, type LeaseOptions } from "./lease.ts";
export type { Projection, ProjectionOptions } from "./projection.ts";
export {
  type AgentInfo,
  CLOSE_CODES,
  type ConsumerInfo,
  DLQ_SUFFIX,
  ERROR_CODES,
  type ErrorCode,
  matchesPattern,
  PROTOCOL_VERSION,
  type StoredEvent,
  type Target,
} from "./protocol.ts";
export type { CallContext, CallOptions, Handler, SendOptions, Trace } from "./rpc.ts";
export {
  type Entity,
  type EntityMeta,
  type InvalidEntity,
  type Json,
  Namespace,
  type NamespaceOptions,
  type StateChange,
} from "./state.ts";
export { type ConnectOptions, connect, Team, type TypedEvent, type TypedEvents } from "./team.ts";
export { buildTraceTree, type TraceItem, type TraceNode, traceFrom, traceIdOf, traceparentFor } from "./trace.ts";
export type { Status } from "./transport.ts";
