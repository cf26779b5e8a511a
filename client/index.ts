/**
 * crosstalk: the isomorphic agent library (browsers, workerd, Node with a WebSocket).
 * Node 20 has no global WebSocket: import from `crosstalk/node` there.
 */

// The parts of the protocol an agent's own code uses; the rest is `crosstalk/protocol`.
export {
  type AgentInfo,
  CLOSE_CODES,
  type ConsumerInfo,
  CrosstalkError,
  DLQ_SUFFIX,
  ERROR_CODES,
  type ErrorCode,
  isCrosstalkError,
  matchesPattern,
  PROTOCOL_VERSION,
  type StoredEvent,
  type Target,
  type TraceItem,
  traceIdOf,
  traceparentFor,
  uuidv7,
} from "../protocol/index.ts";
export { A2AAgent, type A2ACallOptions, type A2AOptions } from "./a2a.ts";
export { defineEvents, type EventCatalog, type EventSpec } from "./catalog.ts";
export {
  type Contract,
  type ContractClient,
  type ContractHandlers,
  defineContract,
  type MethodSpec,
} from "./contract.ts";
export type {
  Ack,
  EventHandler,
  HistoryOptions,
  LiveSubscription,
  PublishOptions,
  PublishResult,
  SubscribeOptions,
  Subscription,
} from "./events.ts";
export { Lease, type LeaseOptions } from "./lease.ts";
export {
  type EncryptionOptions,
  isSealed,
  type PayloadContext,
  type PayloadKey,
  SEALED,
  type Sealed,
} from "./payload-crypto.ts";
export type { PendingInfo } from "./persist.ts";
export type { Projection, ProjectionOptions } from "./projection.ts";
export type { CallContext, CallOptions, Handler, SendOptions, SendResult, Trace } from "./rpc.ts";
export {
  type Entity,
  type EntityMeta,
  type InvalidEntity,
  type Json,
  Namespace,
  type NamespaceOptions,
  type StateChange,
} from "./state.ts";
export { type AgentStorage, MemoryStorage, type StorageOp } from "./storage.ts";
export {
  deleteIndexedDbStorage,
  IndexedDbStorage,
  type IndexedDbStorageOptions,
  indexedDbName,
  openIndexedDbStorage,
} from "./storage-idb.ts";
export { claimTabInstance, type TabInstance, type TabInstanceOptions } from "./tab.ts";
export { type ConnectOptions, connect, Team, type TypedEvent, type TypedEvents } from "./team.ts";
export { buildTraceTree, type TraceNode, traceFrom } from "./trace.ts";
export type { Status } from "./transport.ts";
