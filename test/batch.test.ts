/**
 * Batches: an agent sends the control frames of one tick as one text message (a JSON array
 * of frames) to a room whose welcome says `batches: true`. The room must read every frame of
 * a batch exactly as if it had come alone, in order: answered or refused on its own. A golden
 * batch keeps this version's clients working with later rooms.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  batchOf,
  CLOSE_CODES,
  type ClientFrame,
  DEFAULT_ROOM_LIMITS,
  isBatch,
  PROTOCOL_VERSION,
  parseClientBatch,
  parseClientFrame,
  parseRoomBatch,
  parseRoomFrame,
  type RoomFrame,
} from "../protocol/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

type Golden = { direction: "client" | "room"; frame: { type: string } & Record<string, unknown> };
const golden: Golden[] = JSON.parse(readFileSync(new URL("./fixtures/frames.json", import.meta.url), "utf8"));
const goldenBatch: { text: string; frames: ClientFrame[] } = JSON.parse(
  readFileSync(new URL("./fixtures/batch.json", import.meta.url), "utf8"),
);

describe("parseClientBatch", () => {
  it("reads every golden client frame in a batch exactly as it reads it alone", () => {
    const texts = golden.filter((g) => g.direction === "client").map((g) => JSON.stringify(g.frame));
    const batch = batchOf(texts);
    expect(isBatch(batch)).toBe(true);
    const items = parseClientBatch(batch);
    expect(items).toHaveLength(texts.length);
    expect(items).toEqual(texts.map((text) => parseClientFrame(text)));
  });

  it("refuses each bad element on its own, and an empty or unreadable batch as one BAD_FRAME", () => {
    const call = { type: "rpc.call", ref: "a", to: "bob", method: "echo", input: 1, timeoutMs: 1000 };
    const items = parseClientBatch(
      batchOf([JSON.stringify(call), '{"type":"launch.missiles","ref":"b"}', '{"type":"rpc.call","ref":"c"}', "7"]),
    );
    expect(items.map((i) => (i.ok ? i.frame.type : `${i.error.code}:${i.ref ?? ""}`))).toEqual([
      "rpc.call",
      "UNKNOWN_FRAME:b",
      "BAD_FRAME:c",
      "UNKNOWN_FRAME:",
    ]);
    for (const text of ["[]", "[{", "[1,"]) {
      const refused = parseClientBatch(text);
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({ ok: false, error: { code: "BAD_FRAME" } });
    }
  });

  it("reads the golden batch as this version's client sends it", () => {
    const items = parseClientBatch(goldenBatch.text);
    expect(items.map((i) => (i.ok ? i.frame : i.error))).toEqual(goldenBatch.frames);
  });
});

describe("over a real room", () => {
  let room: RoomServer;
  beforeAll(async () => {
    room = await startRoom();
  });
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });

  it("a client sends the calls of one tick as one batch, and each is answered", async () => {
    const team = room.team("batch-client");
    const sent: string[] = [];
    class Counting extends WebSocket {
      override send(data: unknown, ...rest: unknown[]): void {
        if (typeof data === "string") sent.push(data);
        (super.send as (...args: unknown[]) => void)(data, ...rest);
      }
    }
    const callee = await room.agent("callee", { team });
    callee.handle("echo", (input) => input);
    const caller = await room.agent("caller", { team, WebSocket: Counting });
    await eventually(() => expect(caller.agents().find((a) => a.agent === "callee")?.methods).toEqual(["echo"]));
    sent.length = 0;
    const outputs = await Promise.all(Array.from({ length: 20 }, (_, i) => caller.call("callee", "echo", { i })));
    expect(outputs).toEqual(Array.from({ length: 20 }, (_, i) => ({ i })));
    // The 20 calls left in one message, in the order they were made.
    const batches = sent.filter(isBatch);
    expect(batches).toHaveLength(1);
    const calls = (JSON.parse(batches[0] as string) as { type: string; input: unknown }[]).filter(
      (f) => f.type === "rpc.call",
    );
    expect(calls.map((f) => f.input)).toEqual(Array.from({ length: 20 }, (_, i) => ({ i })));
  });

  it("the room answers or refuses each frame of a batch on its own, in order", async () => {
    const team = room.team("batch-raw");
    const callee = await room.agent("callee", { team });
    callee.handle("echo", (input) => input);
    const token = await room.token("raw", "agent", { team });
    const ws = new WebSocket(`ws://${room.host}/parties/main/${team}?agent=raw&v=${PROTOCOL_VERSION}&token=${token}`);
    const frames: RoomFrame[] = [];
    ws.on("message", (data) => {
      const parsed = parseRoomFrame(String(data));
      if (parsed.ok) frames.push(parsed.frame);
    });
    await eventually(() => expect(frames[0]).toMatchObject({ type: "welcome", batches: true }));
    await eventually(() => expect(frames.some((f) => f.type === "presence" || f.type === "welcome")).toBe(true));
    const call = (ref: string, to: string) => ({
      type: "rpc.call",
      ref,
      to,
      method: "echo",
      input: { ref },
      timeoutMs: 10_000,
    });
    ws.send(
      batchOf([
        JSON.stringify(call("a", "callee")),
        JSON.stringify({ type: "launch.missiles", ref: "b" }),
        JSON.stringify(call("c", "nobody")),
        JSON.stringify(call("d", "callee")),
      ]),
    );
    ws.send("[]");
    const answers = () =>
      frames
        .filter((f) => f.type === "rpc.response" || f.type === "error")
        .map((f) =>
          f.type === "rpc.response"
            ? `${f.ref}:${f.ok ? JSON.stringify(f.output) : f.error.code}`
            : `error:${f.ref ?? ""}:${f.error.code}`,
        );
    await eventually(() => expect(answers()).toHaveLength(5));
    // Refusals are immediate; the two routed calls are answered when the callee answers.
    expect(answers().filter((a) => !a.startsWith("a:") && !a.startsWith("d:"))).toEqual([
      "error:b:UNKNOWN_FRAME",
      "c:NO_ROUTE",
      "error::BAD_FRAME",
    ]);
    expect(answers().filter((a) => a.startsWith("a:") || a.startsWith("d:"))).toEqual([
      'a:{"ref":"a"}',
      'd:{"ref":"d"}',
    ]);
    ws.close();
  });
  /** A raw agent socket: every message it gets, and how it closed. */
  async function rawAgent(team: string, agent: string, batch: boolean) {
    const token = await room.token(agent, "agent", { team });
    const query = `agent=${agent}&v=${PROTOCOL_VERSION}&token=${token}${batch ? "&batch=1" : ""}`;
    const ws = new WebSocket(`ws://${room.host}/parties/main/${team}?${query}`);
    const messages: string[] = [];
    ws.on("message", (data) => messages.push(String(data)));
    const closed = new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
    await eventually(() => expect(messages.length).toBeGreaterThan(0));
    const frames = () =>
      messages
        .flatMap((m) => (isBatch(m) ? parseRoomBatch(m) : [parseRoomFrame(m)]))
        .map((p) => {
          if (!p.ok) throw new Error(`the room sent an invalid frame: ${p.error.message}`);
          return p.frame;
        });
    return { ws, messages, closed, frames };
  }

  it("the room sends a batch=1 socket the frames of one tick as one message, and one each to others", async () => {
    const team = room.team("batch-out");
    const batched = await rawAgent(team, "batched", true);
    const plain = await rawAgent(team, "plain", false);
    const calls = ["a", "b", "c"].map((ref) =>
      JSON.stringify({ type: "rpc.call", ref, to: "nobody", method: "echo", input: 1, timeoutMs: 1000 }),
    );
    const sent = { batched: batched.messages.length, plain: plain.messages.length };
    batched.ws.send(batchOf(calls));
    plain.ws.send(batchOf(calls));
    const refused = (frames: RoomFrame[]) =>
      frames.flatMap((f) => (f.type === "rpc.response" && !f.ok ? [`${f.ref}:${f.error.code}`] : []));
    await eventually(() => expect(refused(batched.frames())).toEqual(["a:NO_ROUTE", "b:NO_ROUTE", "c:NO_ROUTE"]));
    await eventually(() => expect(refused(plain.frames())).toEqual(["a:NO_ROUTE", "b:NO_ROUTE", "c:NO_ROUTE"]));
    // The three answers of one tick: one message for the socket that reads batches, three for the other.
    const answers = (messages: string[], from: number) =>
      messages.slice(from).filter((m) => m.includes('"rpc.response"'));
    expect(answers(batched.messages, sent.batched)).toHaveLength(1);
    expect(answers(plain.messages, sent.plain)).toHaveLength(3);
    expect(plain.messages.some(isBatch)).toBe(false);
    batched.ws.close();
    plain.ws.close();
  });

  it("a batch=1 socket gets every refusal that spent its error budget before the room closes it", async () => {
    const team = room.team("batch-budget");
    const evil = await rawAgent(team, "evil", true);
    const garbage = Array.from({ length: DEFAULT_ROOM_LIMITS.errorBudget + 10 }, (_, i) =>
      JSON.stringify({ type: "launch.missiles", ref: `m${i}` }),
    );
    evil.ws.send(batchOf(garbage));
    expect(await evil.closed).toBe(CLOSE_CODES.TooManyErrors.code);
    const errors = evil.frames().filter((f) => f.type === "error");
    expect(errors).toHaveLength(DEFAULT_ROOM_LIMITS.errorBudget);
    expect(errors.map((e) => (e.type === "error" ? e.ref : null))).toEqual(
      Array.from({ length: DEFAULT_ROOM_LIMITS.errorBudget }, (_, i) => `m${i}`),
    );
  });
});
