/**
 * Calling an outside A2A agent (v1.0, JSON-RPC binding) as easily as a teammate:
 *
 *   const planner = team.a2a("https://planner.example.com/", { token });
 *   const plan = await planner.call({ goal: "ship" }, { timeoutMs: 60_000, onProgress: console.log });
 *
 * The same options as `team.call`: `timeoutMs` aborts the stream and sends `CancelTask`,
 * `signal` too (CANCELLED), `idempotencyKey` becomes the message id (an A2A agent that
 * dedupes message ids, like crosstalk's gateway, runs it once), `onProgress` gets each
 * WORKING status update's data (or text). The output is the first `data` part of the
 * task's artifacts (or its text), or of the answering Message.
 *
 * Plain `fetch` and a small SSE reader: no SDK, so it runs in browsers, workerd and Node alike.
 */
import { a2a, CrosstalkError, ERROR_CODES, type ErrorCode, type Json, uuidv7 } from "../protocol/index.ts";
import type { CallOptions } from "./rpc.ts";

export type A2AOptions = {
  /** Sent as `Authorization: Bearer <token>`; a function is asked before every request. */
  token?: string | (() => string | Promise<string>);
  /** More headers for every request. */
  headers?: Record<string, string>;
  /** Default: the global `fetch`. */
  fetch?: typeof fetch;
};

export type A2ACallOptions = Omit<CallOptions, "retries" | "retryOnTimeout"> & {
  /** `metadata.method` of the message (crosstalk's gateway: which method of the agent). */
  method?: string;
  /** More message metadata. */
  metadata?: Record<string, Json>;
};

const DEFAULT_TIMEOUT_MS = 30_000;

/** An outside A2A agent at `url` (its base: the card is at `<url>/.well-known/agent-card.json`). */
export class A2AAgent {
  readonly url: string;
  #card: Promise<Record<string, unknown>> | null = null;

  constructor(
    url: string,
    private readonly options: A2AOptions = {},
  ) {
    this.url = url.endsWith("/") ? url : `${url}/`;
  }

  /** The agent's card (fetched once). */
  card(): Promise<Record<string, unknown>> {
    this.#card ??= this.#fetch(new URL(a2a.A2A_CARD_PATH, this.url).href, { method: "GET" }).then(async (res) => {
      if (!res.ok) throw await httpError(res, "fetching the agent card");
      return (await res.json()) as Record<string, unknown>;
    });
    this.#card.catch(() => {
      this.#card = null;
    });
    return this.#card;
  }

  /** Sends `input` as one message and resolves with the task's output. */
  async call<T = Json>(input: unknown, options: A2ACallOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const controller = new AbortController();
    let why: CrosstalkError | null = null;
    const stop = (error: CrosstalkError) => {
      why ??= error;
      controller.abort();
    };
    const timer = setTimeout(() => stop(new CrosstalkError("TIMEOUT", `no answer within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = () => stop(new CrosstalkError("CANCELLED", "the caller aborted the call"));
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    let taskId: string | null = null;
    try {
      const endpoint = await this.#endpoint();
      const metadata: Record<string, Json> = { ...options.metadata };
      if (options.method) metadata.method = options.method;
      const message = {
        messageId: options.idempotencyKey ?? uuidv7(),
        role: "ROLE_USER",
        parts: [typeof input === "string" ? { text: input } : { data: (input ?? null) as Json }],
        ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
      };
      const res = await this.#rpc(endpoint, "SendStreamingMessage", { message }, controller.signal, true);
      let output: Json = null;
      for await (const update of readStream(res)) {
        if ("message" in update) return outputOf(update.message.parts) as T;
        if ("task" in update) {
          taskId = update.task.id;
          const done = finished(update.task.status, outputOfArtifacts(update.task.artifacts) ?? output);
          if (done) return done.output as T;
          continue;
        }
        if ("artifactUpdate" in update) {
          taskId ??= update.artifactUpdate.taskId;
          output = outputOf(update.artifactUpdate.artifact.parts);
          continue;
        }
        taskId ??= update.statusUpdate.taskId;
        const status = update.statusUpdate.status;
        if (status.state === "TASK_STATE_WORKING" && status.message)
          options.onProgress?.(outputOf(status.message.parts));
        const done = finished(status, output);
        if (done) return done.output as T;
      }
      throw new CrosstalkError("TARGET_GONE", "the agent closed the stream before the task ended", { taskId });
    } catch (error) {
      if (why) {
        if (taskId) void this.#cancel(taskId);
        throw why;
      }
      if (error instanceof CrosstalkError) throw error;
      throw new CrosstalkError("OFFLINE", `could not reach the A2A agent at ${this.url}: ${String(error)}`);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Best effort: the agent's task is cancelled (`CancelTask`); errors are ignored. */
  async #cancel(taskId: string): Promise<void> {
    try {
      await this.#rpc(await this.#endpoint(), "CancelTask", { id: taskId });
    } catch {
      // The caller already has its error.
    }
  }

  async #endpoint(): Promise<string> {
    const card = await this.card();
    const interfaces = Array.isArray(card.supportedInterfaces)
      ? (card.supportedInterfaces as { url?: string; protocolBinding?: string }[])
      : [];
    const jsonRpc = interfaces.find((i) => i.protocolBinding?.toUpperCase() === "JSONRPC" && i.url);
    return jsonRpc?.url ?? (typeof card.url === "string" ? card.url : this.url);
  }

  async #rpc(
    endpoint: string,
    method: string,
    params: unknown,
    signal?: AbortSignal,
    stream = false,
  ): Promise<Response> {
    const res = await this.#fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: stream ? "text/event-stream" : "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: uuidv7(), method, params }),
      ...(signal ? { signal } : {}),
    });
    const type = res.headers.get("Content-Type") ?? "";
    if (res.ok && stream && type.startsWith("text/event-stream")) return res;
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw await httpError(res, method);
    }
    const parsed = a2a.jsonRpcResponseSchema.safeParse(body);
    if (!parsed.success) throw await httpError(res, method);
    if ("error" in parsed.data) throw rpcError(parsed.data.error);
    if (stream) {
      // A server without streaming answered with the result itself: one update.
      return new Response(`data: ${JSON.stringify(parsed.data)}\n\n`, {
        headers: { "Content-Type": "text/event-stream" },
      });
    }
    return res;
  }

  async #fetch(url: string, init: RequestInit): Promise<Response> {
    const headers = new Headers(this.options.headers);
    headers.set(a2a.A2A_VERSION_HEADER, a2a.A2A_PROTOCOL_VERSION);
    for (const [k, v] of new Headers(init.headers)) headers.set(k, v);
    const token = typeof this.options.token === "function" ? await this.options.token() : this.options.token;
    if (token) headers.set("Authorization", `Bearer ${token}`);
    return (this.options.fetch ?? fetch)(url, { ...init, headers });
  }
}

/** The output of a finished task, or the error it ended with; null while it runs. */
function finished(status: a2a.A2AStatus, output: Json): { output: Json } | null {
  const state = status.state;
  if (state === "TASK_STATE_COMPLETED") return { output };
  if (!a2a.TERMINAL_STATES.has(state) && !a2a.INTERRUPTED_STATES.has(state)) return null;
  const parts = status.message?.parts ?? [];
  const detail = parts.find((p) => p.data !== undefined)?.data as { code?: unknown; message?: unknown } | undefined;
  const text = parts.find((p) => typeof p.text === "string")?.text ?? state;
  const known = typeof detail?.code === "string" && detail.code in ERROR_CODES ? (detail.code as ErrorCode) : null;
  const code: ErrorCode =
    state === "TASK_STATE_CANCELED"
      ? "CANCELLED"
      : (known ?? (state === "TASK_STATE_REJECTED" ? "NO_ROUTE" : "HANDLER_ERROR"));
  const message = typeof detail?.message === "string" ? detail.message : text;
  throw new CrosstalkError(code, `the A2A agent's task ended ${state}: ${message}`, { state, status });
}

/** The first `data` part's value, else the first text, else null. */
function outputOf(parts: a2a.A2APart[]): Json {
  const data = parts.find((p) => p.data !== undefined);
  if (data) return data.data as Json;
  return parts.find((p) => typeof p.text === "string")?.text ?? null;
}

function outputOfArtifacts(artifacts: a2a.A2AArtifact[] | undefined): Json | undefined {
  const first = artifacts?.[0];
  return first ? outputOf(first.parts) : undefined;
}

/** The JSON-RPC results of an SSE stream, each parsed as a stream response (unknown ones skipped). */
async function* readStream(res: Response): AsyncGenerator<a2a.A2AStreamResponse> {
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += value;
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        newline = buffer.indexOf("\n");
        if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
        else if (line === "" && data) {
          const event = parseEvent(data);
          data = "";
          if (event) yield event;
        }
      }
    }
    if (data) {
      const event = parseEvent(data);
      if (event) yield event;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

function parseEvent(text: string): a2a.A2AStreamResponse | null {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CrosstalkError("INTERNAL", "the A2A agent sent an event that is not JSON");
  }
  const response = a2a.jsonRpcResponseSchema.safeParse(json);
  if (!response.success) throw new CrosstalkError("INTERNAL", "the A2A agent sent an event that is not JSON-RPC");
  if ("error" in response.data) throw rpcError(response.data.error);
  const update = a2a.a2aStreamResponseSchema.safeParse(response.data.result);
  return update.success ? (update.data as a2a.A2AStreamResponse) : null;
}

function rpcError(error: { code: number; message: string; data?: unknown }): CrosstalkError {
  const E = a2a.A2A_ERRORS;
  const code: ErrorCode =
    error.code === E.INVALID_PARAMS
      ? "INVALID_INPUT"
      : error.code === E.TASK_NOT_FOUND
        ? "NOT_FOUND"
        : error.code === E.INTERNAL_ERROR
          ? "INTERNAL"
          : "INVALID_ARGUMENT";
  return new CrosstalkError(code, `A2A error ${error.code}: ${error.message}`, { a2a: error });
}

async function httpError(res: Response, what: string): Promise<CrosstalkError> {
  const code: ErrorCode = res.status === 401 ? "UNAUTHORIZED" : res.status === 403 ? "FORBIDDEN" : "INTERNAL";
  return new CrosstalkError(code, `HTTP ${res.status} ${what}`, { status: res.status });
}
