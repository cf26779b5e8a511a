/**
 * The part of A2A v1.0 (JSON-RPC binding, ProtoJSON field names) that crosstalk speaks: the
 * room's gateway (`party/a2a.ts`) answers it and the client's outbound `team.a2a(url)`
 * (`client/a2a.ts`) sends it. Both import the schemas, error codes and state names from here.
 *
 * Incoming objects are parsed loosely (unknown fields kept): A2A peers add fields, and a
 * field we do not use is not a reason to refuse a request. See https://a2a-protocol.org.
 */
import { z } from "zod";

export const A2A_PROTOCOL_VERSION = "1.0";
export const A2A_VERSION_HEADER = "A2A-Version";
export const A2A_CARD_PATH = ".well-known/agent-card.json";

/** JSON-RPC and A2A error codes (A2A §9.5). */
export const A2A_ERRORS = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  TASK_NOT_FOUND: -32001,
  TASK_NOT_CANCELABLE: -32002,
  PUSH_NOTIFICATION_NOT_SUPPORTED: -32003,
  UNSUPPORTED_OPERATION: -32004,
  CONTENT_TYPE_NOT_SUPPORTED: -32005,
  INVALID_AGENT_RESPONSE: -32006,
  EXTENDED_CARD_NOT_CONFIGURED: -32007,
  EXTENSION_SUPPORT_REQUIRED: -32008,
  VERSION_NOT_SUPPORTED: -32009,
} as const;

export const TASK_STATES = [
  "TASK_STATE_SUBMITTED",
  "TASK_STATE_WORKING",
  "TASK_STATE_INPUT_REQUIRED",
  "TASK_STATE_AUTH_REQUIRED",
  "TASK_STATE_COMPLETED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_REJECTED",
] as const;
export type TaskState = (typeof TASK_STATES)[number];
/** States after which a task never changes again; a stream closes on them. */
export const TERMINAL_STATES: ReadonlySet<string> = new Set<TaskState>([
  "TASK_STATE_COMPLETED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_REJECTED",
]);
/** States on which a stream also closes: the task waits for the client. */
export const INTERRUPTED_STATES: ReadonlySet<string> = new Set<TaskState>([
  "TASK_STATE_INPUT_REQUIRED",
  "TASK_STATE_AUTH_REQUIRED",
]);

const metadata = z.record(z.string(), z.json()).optional();

/** One part of a message or artifact: exactly one of `text`, `data`, `url`, `raw` in practice. */
export const a2aPartSchema = z.looseObject({
  text: z.string().optional(),
  data: z.json().optional(),
  url: z.string().optional(),
  raw: z.string().optional(),
  mediaType: z.string().optional(),
  filename: z.string().optional(),
  metadata,
});
export type A2APart = z.infer<typeof a2aPartSchema>;

export const a2aMessageSchema = z.looseObject({
  messageId: z.string().min(1).max(200),
  contextId: z.string().max(200).optional(),
  taskId: z.string().max(200).optional(),
  role: z.enum(["ROLE_USER", "ROLE_AGENT", "ROLE_UNSPECIFIED"]).optional(),
  parts: z.array(a2aPartSchema).max(100),
  metadata,
  extensions: z.array(z.string()).optional(),
  referenceTaskIds: z.array(z.string()).optional(),
});
export type A2AMessage = z.infer<typeof a2aMessageSchema>;

export const a2aStatusSchema = z.looseObject({
  state: z.string(),
  message: a2aMessageSchema.optional(),
  timestamp: z.string().optional(),
});
export type A2AStatus = z.infer<typeof a2aStatusSchema>;

export const a2aArtifactSchema = z.looseObject({
  artifactId: z.string(),
  name: z.string().optional(),
  description: z.string().optional(),
  parts: z.array(a2aPartSchema),
  metadata,
});
export type A2AArtifact = z.infer<typeof a2aArtifactSchema>;

export const a2aTaskSchema = z.looseObject({
  id: z.string(),
  contextId: z.string().optional(),
  status: a2aStatusSchema,
  artifacts: z.array(a2aArtifactSchema).optional(),
  history: z.array(a2aMessageSchema).optional(),
  metadata,
});
export type A2ATask = z.infer<typeof a2aTaskSchema>;

export const a2aStatusUpdateSchema = z.looseObject({
  taskId: z.string(),
  contextId: z.string().optional(),
  status: a2aStatusSchema,
  metadata,
});
export const a2aArtifactUpdateSchema = z.looseObject({
  taskId: z.string(),
  contextId: z.string().optional(),
  artifact: a2aArtifactSchema,
  append: z.boolean().optional(),
  lastChunk: z.boolean().optional(),
  metadata,
});

/** What a stream carries, one per SSE event (and what `SendMessage` answers: `task` or `message`). */
export const a2aStreamResponseSchema = z.union([
  z.object({ task: a2aTaskSchema }),
  z.object({ message: a2aMessageSchema }),
  z.object({ statusUpdate: a2aStatusUpdateSchema }),
  z.object({ artifactUpdate: a2aArtifactUpdateSchema }),
]);
export type A2AStreamResponse =
  | { task: A2ATask }
  | { message: A2AMessage }
  | { statusUpdate: z.infer<typeof a2aStatusUpdateSchema> }
  | { artifactUpdate: z.infer<typeof a2aArtifactUpdateSchema> };

export const a2aSendParamsSchema = z.looseObject({
  message: a2aMessageSchema,
  configuration: z
    .looseObject({
      acceptedOutputModes: z.array(z.string()).optional(),
      historyLength: z.number().int().min(0).optional(),
      returnImmediately: z.boolean().optional(),
    })
    .optional(),
  metadata,
});
export type A2ASendParams = z.infer<typeof a2aSendParamsSchema>;

export const a2aTaskIdParamsSchema = z.looseObject({
  id: z.string().min(1).max(200),
  historyLength: z.number().int().min(0).optional(),
});

export const a2aListTasksParamsSchema = z.looseObject({
  contextId: z.string().optional(),
  status: z.enum(TASK_STATES).optional(),
  pageSize: z.number().int().min(1).max(100).optional(),
  pageToken: z.string().optional(),
  historyLength: z.number().int().min(0).optional(),
  includeArtifacts: z.boolean().optional(),
});

export const jsonRpcRequestSchema = z.object({
  jsonrpc: z.literal("2.0"),
  id: z.union([z.string(), z.number().int(), z.null()]).optional(),
  method: z.string().min(1),
  params: z.json().optional(),
});
export type JsonRpcId = string | number | null;
export type JsonRpcError = { code: number; message: string; data?: unknown };

export const jsonRpcResponseSchema = z.union([
  z.object({ jsonrpc: z.literal("2.0"), id: z.unknown(), result: z.unknown() }),
  z.object({
    jsonrpc: z.literal("2.0"),
    id: z.unknown(),
    error: z.object({ code: z.number(), message: z.string(), data: z.unknown().optional() }),
  }),
]);

/**
 * Message metadata keys the gateway reads (`metadata` of a `SendMessage` message):
 * - `method`: the crosstalk method to call (optional when the agent serves exactly one);
 * - `role` / `agent`: on the team's endpoint, which role or agent gets the call;
 * - `timeoutMs`: the call's deadline (default {@link A2A_DEFAULT_TIMEOUT_MS}).
 */
export const A2A_METADATA = { method: "method", role: "role", agent: "agent", timeoutMs: "timeoutMs" } as const;
export const A2A_DEFAULT_TIMEOUT_MS = 300_000;
/** The extension URI under which a skill's input and output JSON Schemas are published on a card. */
export const A2A_SCHEMA_EXTENSION = "https://crosstalk.dev/a2a/method-schemas/v1";
