/**
 * `team.a2a(url)`: a crosstalk agent calls an outside A2A agent — here one built with the A2A
 * project's own server (@a2a-js/sdk on Express, on 127.0.0.1:0) — with `call`'s options.
 */
import type { AddressInfo } from "node:net";
import { type AgentCard, TaskState } from "@a2a-js/sdk";
import {
  AgentEvent,
  type AgentExecutor,
  DefaultRequestHandler,
  type ExecutionEventBus,
  InMemoryTaskStore,
  type RequestContext,
} from "@a2a-js/sdk/server";
import { agentCardHandler, jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CrosstalkError } from "../client/index.ts";
import { createTestRoom, eventually } from "./harness.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An A2A agent: `work` reports two steps and answers; `slow` runs until cancelled; `fail` fails. */
class Executor implements AgentExecutor {
  readonly cancelled = new Set<string>();
  readonly messageIds: string[] = [];

  async execute(ctx: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { taskId, contextId } = ctx;
    const message = ctx.userMessage;
    this.messageIds.push(message.messageId);
    const method = (message.metadata as { method?: string } | undefined)?.method;
    const input = message.parts[0]?.content?.$case === "data" ? message.parts[0].content.value : null;
    const status = (state: TaskState, data?: unknown) =>
      AgentEvent.statusUpdate({
        taskId,
        contextId,
        status: {
          state,
          timestamp: new Date().toISOString(),
          ...(data === undefined
            ? {}
            : {
                message: {
                  messageId: crypto.randomUUID(),
                  contextId,
                  taskId,
                  role: 2,
                  parts: [
                    typeof data === "string"
                      ? { content: { $case: "text", value: data }, metadata: undefined, filename: "", mediaType: "" }
                      : {
                          content: { $case: "data", value: data as Record<string, unknown> },
                          metadata: undefined,
                          filename: "",
                          mediaType: "",
                        },
                  ],
                  metadata: undefined,
                  extensions: [],
                  referenceTaskIds: [],
                },
              }),
        },
        metadata: undefined,
      } as never);
    bus.publish(
      AgentEvent.task({
        id: taskId,
        contextId,
        status: { state: TaskState.TASK_STATE_SUBMITTED, timestamp: new Date().toISOString(), message: undefined },
        artifacts: [],
        history: [message],
        metadata: undefined,
      }),
    );
    if (method === "fail") {
      bus.publish(status(TaskState.TASK_STATE_FAILED, "the printer is on fire"));
      bus.finished();
      return;
    }
    if (method === "slow") {
      bus.publish(status(TaskState.TASK_STATE_WORKING));
      while (!this.cancelled.has(taskId)) await sleep(20);
      bus.publish(status(TaskState.TASK_STATE_CANCELED));
      bus.finished();
      return;
    }
    for (const step of [1, 2]) {
      await sleep(20);
      bus.publish(status(TaskState.TASK_STATE_WORKING, { step }));
    }
    bus.publish(
      AgentEvent.artifactUpdate({
        taskId,
        contextId,
        artifact: {
          artifactId: "result",
          name: "result",
          description: "",
          parts: [
            {
              content: { $case: "data", value: { echoed: input } as Record<string, unknown> },
              metadata: undefined,
              filename: "",
              mediaType: "",
            },
          ],
          metadata: undefined,
          extensions: [],
        },
        append: false,
        lastChunk: true,
        metadata: undefined,
      }),
    );
    bus.publish(status(TaskState.TASK_STATE_COMPLETED));
    bus.finished();
  }

  async cancelTask(taskId: string): Promise<void> {
    this.cancelled.add(taskId);
  }
}

let server: ReturnType<express.Express["listen"]>;
let url = "";
const executor = new Executor();

beforeAll(async () => {
  const app = express();
  let card: AgentCard | null = null;
  const handler = () =>
    new DefaultRequestHandler(card as AgentCard, new InMemoryTaskStore(), executor) as DefaultRequestHandler;
  server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  card = {
    name: "outside",
    description: "an outside A2A agent",
    supportedInterfaces: [{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: "1.0" }],
    version: "1.0.0",
    capabilities: { streaming: true, pushNotifications: false, extensions: [] },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ["application/json"],
    defaultOutputModes: ["application/json"],
    skills: [],
    signatures: [],
  } as unknown as AgentCard;
  const requestHandler = handler();
  app.use("/.well-known/agent-card.json", agentCardHandler({ agentCardProvider: requestHandler }));
  app.use("/", jsonRpcHandler({ requestHandler, userBuilder: UserBuilder.noAuthentication }));
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
});

describe("team.a2a(url) calls an outside A2A agent", () => {
  it("resolves with the artifact's data and reports WORKING updates as progress", async () => {
    await using room = createTestRoom();
    const team = await room.agent("planner-1");
    const progress: unknown[] = [];
    const output = await team.a2a(url).call({ goal: "ship" }, { onProgress: (p) => progress.push(p), method: "work" });
    expect(output).toEqual({ echoed: { goal: "ship" } });
    expect(progress).toEqual([{ step: 1 }, { step: 2 }]);
  });

  it("sends the idempotency key as the message id", async () => {
    await using room = createTestRoom();
    const team = await room.agent("planner-1");
    await team.a2a(url).call({}, { method: "work", idempotencyKey: "order-77" });
    expect(executor.messageIds).toContain("order-77");
  });

  it("times out: aborts the stream, sends CancelTask, rejects with TIMEOUT", async () => {
    await using room = createTestRoom();
    const team = await room.agent("planner-1");
    const before = executor.cancelled.size;
    const error = await team
      .a2a(url)
      .call({}, { method: "slow", timeoutMs: 300 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CrosstalkError);
    expect((error as CrosstalkError).code).toBe("TIMEOUT");
    await eventually(() => expect(executor.cancelled.size).toBe(before + 1));
  });

  it("an aborted signal cancels the task: CANCELLED", async () => {
    await using room = createTestRoom();
    const team = await room.agent("planner-1");
    const before = executor.cancelled.size;
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    const error = await team
      .a2a(url)
      .call({}, { method: "slow", signal: controller.signal })
      .catch((e: unknown) => e);
    expect((error as CrosstalkError).code).toBe("CANCELLED");
    await eventually(() => expect(executor.cancelled.size).toBe(before + 1));
  });

  it("maps a FAILED task to HANDLER_ERROR with its message, and an unreachable agent to OFFLINE", async () => {
    await using room = createTestRoom();
    const team = await room.agent("planner-1");
    const failed = (await team
      .a2a(url)
      .call({}, { method: "fail" })
      .catch((e: unknown) => e)) as CrosstalkError;
    expect(failed.code).toBe("HANDLER_ERROR");
    expect(failed.message).toContain("the printer is on fire");
    const offline = (await team
      .a2a("http://127.0.0.1:1/")
      .call({})
      .catch((e: unknown) => e)) as CrosstalkError;
    expect(offline.code).toBe("OFFLINE");
  });

  it("calls a crosstalk team's own gateway too (in-process room): output, progress, -32602 as INVALID_INPUT", async () => {
    await using room = createTestRoom();
    const team = room.team("a2a-loop");
    const pricing = await room.agent("pricing-1", { team, role: "pricing" });
    pricing.handle("quote", async (input, ctx) => {
      ctx.progress({ step: 1 });
      if (typeof input !== "object" || input === null) throw new CrosstalkError("INVALID_INPUT", "quote input: object");
      return { price: 42 };
    });
    const buyer = await room.agent("buyer-1", { team });
    await eventually(() => expect(buyer.agents().find((a) => a.agent === "pricing-1")?.methods).toEqual(["quote"]));
    // The in-process room's fetch stands in for the network (its principal comes from ?agent=&role=).
    const viaRoom: typeof fetch = (input, init) => {
      const u = new URL(String(input));
      u.searchParams.set("agent", "buyer-1");
      u.searchParams.set("role", "buyer");
      return room.fetch(`${u.pathname}${u.search}`, init);
    };
    const agent = buyer.a2a(`http://${room.host}/parties/main/${team}/a2a/pricing-1/`, { fetch: viaRoom });
    const progress: unknown[] = [];
    expect(await agent.call({ sku: "X" }, { onProgress: (p) => progress.push(p) })).toEqual({ price: 42 });
    expect(progress).toEqual([{ step: 1 }]);
    const invalid = (await agent.call("not an object").catch((e: unknown) => e)) as CrosstalkError;
    expect(invalid.code).toBe("INVALID_INPUT");
  });
});
