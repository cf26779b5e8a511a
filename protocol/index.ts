/**
 * The crosstalk protocol: what the room (`party/`) and the client (`client/`) both speak.
 * Frames, error and close codes, the layouts of the Yjs documents, trace ids, dead letters
 * and retry pacing. Both sides import from here and never from each other
 * (`test/boundaries.test.ts`); everything here runs unchanged in browsers, workerd and Node
 * (`test/isomorphic.test.ts`). Published as `crosstalk/protocol`.
 */

export * as a2a from "./a2a.ts";
export {
  type BackoffOptions,
  backoff,
  endOfTick,
  sleep,
} from "./backoff.ts";
export {
  BINARY_KIND_CHUNK,
  BINARY_KIND_DOC,
  chunkBinary,
  createReassembler,
  type DocFrame,
  decodeDocFrame,
  encodeDocFrame,
  MAX_REASSEMBLED_BYTES,
  Y_MESSAGE_AWARENESS,
  Y_MESSAGE_SYNC,
} from "./binary.ts";
export {
  CLOSE_CODES,
  ERROR_CODES,
  type ErrorBody,
  type ErrorCode,
  errorBodySchema,
  errorCodeSchema,
  FATAL_CLOSE_CODES,
} from "./codes.ts";
export {
  BINARY_KIND_DEFLATED,
  DEFLATE_MIN_BYTES,
  type DeflatedFrame,
  deflateFrame,
  readDeflatedFrame,
} from "./deflate.ts";
export {
  type DeadLetterFailure,
  DLQ_SUFFIX,
  deadLetter,
} from "./dlq.ts";
export {
  changedEntities,
  checkEntity,
  checkKey,
  deleteEntity,
  type Entity,
  EntityIndex,
  type EntityMeta,
  fieldKey,
  fieldsMap,
  metaMap,
  projectionsMap,
  SEP,
  splitFieldKey,
  writeEntity,
} from "./entities.ts";
export {
  CrosstalkError,
  isCrosstalkError,
} from "./errors.ts";
export {
  batchOf,
  type ClientFrame,
  type ClientFrameOf,
  type ClientFrameType,
  clientFrameSchema,
  clientFrames,
  isBatch,
  MAX_BATCH_CHARS,
  type OutboxEntry,
  outboxEntrySchema,
  type Parsed,
  PING_FRAME,
  PONG_FRAME,
  parseClientBatch,
  parseClientFrame,
  parseRoomBatch,
  parseRoomFrame,
  READ_FRAME_PREFIX,
  type ReplyOf,
  type RequestType,
  type RoomFrame,
  type RoomFrameOf,
  type RoomFrameType,
  readFrame,
  replies,
  roomFrameSchema,
  roomFrames,
} from "./frames.ts";
export {
  type Identity,
  identitySchema,
  MAX_IDENTITY_BYTES,
  type TokenClaims,
  tokenAudience,
  tokenClaimsSchema,
} from "./identity.ts";
export {
  randomBytes,
  toHex,
  uuidv7,
} from "./ids.ts";
export {
  DEFAULT_LOG_WINDOW,
  DEFAULT_ROOM_LIMITS,
  LOG_SEGMENT_SIZE,
  MAX_EVENT_BYTES,
  MAX_FRAME_BYTES,
  MAX_HISTORY_PAGE,
  MAX_JSON_DEPTH,
  PROTOCOL_VERSION,
  type RoomLimits,
} from "./limits.ts";
export {
  type CompactEvent,
  compactEvent,
  entryIdTs,
  eventAt,
  type LogEntry,
  type LogSegments,
  logHead,
  logSegments,
  logTail,
  segmentOf,
  storedEvent,
} from "./log.ts";
export {
  AUDIT_STREAM,
  type DocName,
  docNameSchema,
  eventTypeSchema,
  isWritableByClients,
  logDoc,
  METHOD,
  matchesPattern,
  methodSchema,
  NAME,
  nameSchema,
  patternSchema,
  stateDoc,
} from "./names.ts";
export {
  ACTIONS,
  type Action,
  ALLOW_ALL,
  bindSub,
  EVERY_ROLE,
  Grants,
  MAX_RULE_CHARS,
  type Permissions,
  type Policy,
  PolicyError,
  type PolicyInput,
  parsePolicy,
  permissionsOf,
  permissionsSchema,
  policySchema,
  type RetentionRule,
  retentionRuleSchema,
  ruleProblem,
  SUB,
  targetResource,
  typeResource,
  wholeStream,
} from "./permissions.ts";
export {
  type AgentInfo,
  agentInfoSchema,
  type ConsumerInfo,
  consumerInfoSchema,
  type EventInput,
  eventInputSchema,
  type Json,
  jsonRecordSchema,
  leaseNameSchema,
  leaseTtlSchema,
  type MethodInfo,
  methodInfoSchema,
  refSchema,
  type StoredEvent,
  storedEventSchema,
  type Target,
  type TraceItem,
  targetSchema,
  traceFields,
  traceItemSchema,
  traceparentSchema,
} from "./schemas.ts";
export {
  eventNode,
  newSpanId,
  traceIdOf,
  traceparentFor,
} from "./trace.ts";
