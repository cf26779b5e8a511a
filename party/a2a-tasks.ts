/**
 * A2A tasks in room storage, per caller agent (a caller sees only its own: another agent's
 * task id is simply not found). Each task keeps every update it streamed, numbered from 1,
 * so a client whose stream dropped resumes from the last update it saw (SSE `Last-Event-ID`)
 * and loses nothing, also after a room restart.
 *
 * Values are JSON strings split into parts well under the 128 KiB storage limit, so a large
 * artifact is stored like a small one. A task record keeps the last {@link HISTORY_KEPT}
 * messages of its history (every update stays in the update log).
 *
 * Not re-exported; used by `a2a.ts` only.
 */
import { z } from "zod";
import type { a2a } from "../protocol/index.ts";
import { keys } from "./keys.ts";
import type { KvStorage } from "./storage.ts";

type A2ATask = a2a.A2ATask;
type StreamResponse = a2a.A2AStreamResponse;

/** Characters per stored part: at most 64 KiB even if every character takes two bytes. */
const PART_CHARS = 32 * 1024;
const HISTORY_KEPT = 50;

/** What the gateway keeps about a task besides its A2A form: what to call, to run it again after a restart. */
export type TaskRecord = {
  task: A2ATask;
  /** The crosstalk call behind it. */
  call: { to: string | { role: string }; method: string; input: z.core.util.JSONType; timeoutMs: number };
  /** Updates streamed so far (the last update's number). */
  seq: number;
  /** Room clock of the last change, for ListTasks' order. */
  updatedAt: number;
};

const recordSchema = z.object({
  task: z.looseObject({ id: z.string(), status: z.looseObject({ state: z.string() }) }),
  call: z.object({
    to: z.union([z.string(), z.object({ role: z.string() })]),
    method: z.string(),
    input: z.json(),
    timeoutMs: z.number(),
  }),
  seq: z.number().int().min(0),
  updatedAt: z.number(),
});

export type Listener = (seq: number, update: StreamResponse) => void;

export class TaskStore {
  /** Records loaded or written in this incarnation, by `<agent>|<task>`. */
  readonly #records = new Map<string, TaskRecord>();
  /** Live stream listeners per task. */
  readonly #listeners = new Map<string, Set<Listener>>();
  /** Writes per task, in order: an update is stored before the next one, and before anyone sees it. */
  readonly #writes = new Map<string, Promise<void>>();

  constructor(private readonly storage: KvStorage) {}

  /** Which task a caller's message id started, if any. */
  async taskOfMessage(agent: string, messageId: string): Promise<string | undefined> {
    const id = await this.storage.get<unknown>(keys.a2aMessage(agent, messageId));
    return typeof id === "string" ? id : undefined;
  }

  /** The caller's task, or undefined (never another caller's). */
  async get(agent: string, id: string): Promise<TaskRecord | undefined> {
    const cached = this.#records.get(`${agent}|${id}`);
    if (cached) return cached;
    const parsed = recordSchema.safeParse(await readJson(this.storage, keys.a2aTask(agent, id)));
    if (!parsed.success) return undefined;
    const record = parsed.data as TaskRecord;
    this.#records.set(`${agent}|${id}`, record);
    return record;
  }

  /** Every task of the caller (ListTasks), newest change first. */
  async list(agent: string): Promise<TaskRecord[]> {
    const stored = await this.storage.list<string>({ prefix: keys.a2aTaskPrefix(agent) });
    const parts = new Map<string, string[]>();
    for (const [key, part] of stored) {
      const id = key.slice(keys.a2aTaskPrefix(agent).length).split("|")[0] as string;
      parts.set(id, [...(parts.get(id) ?? []), part]);
    }
    const records: TaskRecord[] = [];
    for (const [id, chunks] of parts) {
      const cached = this.#records.get(`${agent}|${id}`);
      if (cached) {
        records.push(cached);
        continue;
      }
      const parsed = recordSchema.safeParse(parseJson(chunks.join("")));
      if (parsed.success) records.push(parsed.data as TaskRecord);
    }
    return records.sort((a, b) => b.updatedAt - a.updatedAt);
  }

  /** Stores a new task, the message id that started it, and its first update (the task itself). */
  create(agent: string, record: TaskRecord, messageId: string): Promise<void> {
    const key = `${agent}|${record.task.id}`;
    this.#records.set(key, record);
    return this.#enqueue(key, async () => {
      await this.storage.put({ [keys.a2aMessage(agent, messageId)]: record.task.id });
      await this.#store(agent, record, { task: record.task });
    });
  }

  /**
   * Applies one update to the task (`change` edits the record), stores both, then tells live
   * listeners. Resolves once stored.
   */
  update(agent: string, id: string, update: StreamResponse, change: (record: TaskRecord) => void): Promise<void> {
    const key = `${agent}|${id}`;
    return this.#enqueue(key, async () => {
      const record = await this.get(agent, id);
      if (!record) return;
      change(record);
      const history = record.task.history;
      if (history && history.length > HISTORY_KEPT) record.task.history = history.slice(-HISTORY_KEPT);
      await this.#store(agent, record, update);
    });
  }

  /** Updates after `after` (0: all), from storage, in order. */
  async updates(agent: string, id: string, after: number): Promise<{ seq: number; update: StreamResponse }[]> {
    const prefix = keys.a2aEvents(agent, id);
    const stored = await this.storage.list<string>({ prefix, start: keys.a2aEvent(agent, id, after + 1) });
    const bySeq = new Map<number, string[]>();
    for (const [key, part] of stored) {
      const seq = Number(key.slice(prefix.length).split("|")[0]);
      bySeq.set(seq, [...(bySeq.get(seq) ?? []), part]);
    }
    return [...bySeq]
      .sort((a, b) => a[0] - b[0])
      .map(([seq, parts]) => ({ seq, update: parseJson(parts.join("")) as StreamResponse }));
  }

  /** Follows a task's updates as they are stored; returns a function that stops. */
  listen(agent: string, id: string, listener: Listener): () => void {
    const key = `${agent}|${id}`;
    const set = this.#listeners.get(key) ?? new Set();
    this.#listeners.set(key, set.add(listener));
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(key);
    };
  }

  /** Resolves once every write queued for the task so far is stored. */
  settled(agent: string, id: string): Promise<void> {
    return this.#writes.get(`${agent}|${id}`) ?? Promise.resolve();
  }

  async #store(agent: string, record: TaskRecord, update: StreamResponse): Promise<void> {
    record.seq += 1;
    const seq = record.seq;
    await writeJson(this.storage, keys.a2aEvent(agent, record.task.id, seq), update);
    await writeJson(this.storage, keys.a2aTask(agent, record.task.id), record);
    for (const listener of this.#listeners.get(`${agent}|${record.task.id}`) ?? []) listener(seq, update);
  }

  #enqueue(key: string, write: () => Promise<void>): Promise<void> {
    const next = (this.#writes.get(key) ?? Promise.resolve()).then(write);
    const settled = next.catch(() => {});
    this.#writes.set(key, settled);
    void settled.then(() => {
      if (this.#writes.get(key) === settled) this.#writes.delete(key);
    });
    return next;
  }
}

/** Writes `value` as JSON parts `<prefix><n>`, removing parts a longer earlier value left. */
async function writeJson(storage: KvStorage, prefix: string, value: unknown): Promise<void> {
  const text = JSON.stringify(value);
  const entries: Record<string, string> = {};
  let n = 0;
  for (let i = 0; i === 0 || i < text.length; i += PART_CHARS)
    entries[`${prefix}${pad4(n++)}`] = text.slice(i, i + PART_CHARS);
  const old = await storage.list({ prefix, start: `${prefix}${pad4(n)}` });
  // Up to 128 keys per put: a value this large is far beyond any task.
  await storage.put(entries);
  if (old.size > 0) await storage.delete([...old.keys()]);
}

async function readJson(storage: KvStorage, prefix: string): Promise<unknown> {
  const parts = await storage.list<string>({ prefix });
  if (parts.size === 0) return undefined;
  return parseJson([...parts.values()].join(""));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const pad4 = (n: number) => n.toString().padStart(4, "0");
