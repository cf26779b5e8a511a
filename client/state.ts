/**
 * Shared state: a namespace is a map of entities in the document `state/<ns>`.
 *
 * Each entity is a nested Y.Map of its top-level fields, so two agents that change
 * different fields of one entity concurrently both keep their change. When they write the
 * same field, Yjs keeps one value on every replica: the write of the client with the higher
 * Yjs client id wins (a deterministic, arbitrary tie-break).
 */
import * as Y from "yjs";
import { z } from "zod";
import { CrosstalkError } from "./errors.ts";

export type Json = z.core.util.JSONType;
export type Entity = { [field: string]: Json };

export type StateChange = {
  /** Entity keys whose value changed (set, updated or deleted). */
  keys: string[];
  /** True when the change was made by this client, false when it came from the room. */
  local: boolean;
};

const entitySchema = z.record(z.string(), z.json());

function checkEntity(key: string, value: unknown): Entity {
  if (typeof key !== "string" || key.length === 0 || key.length > 512) {
    throw new CrosstalkError("INVALID_ARGUMENT", "an entity key must be a non-empty string of at most 512 characters");
  }
  const parsed = entitySchema.safeParse(value);
  if (!parsed.success) {
    throw new CrosstalkError("INVALID_ARGUMENT", `entity ${key} must be a JSON object`, parsed.error.issues);
  }
  return parsed.data;
}

const sameJson = (a: unknown, b: unknown): boolean => a === b || JSON.stringify(a) === JSON.stringify(b);

/** Writes `next` into `fields`, touching only the fields whose value changed. */
function writeFields(fields: Y.Map<Json>, next: Entity, removeMissing: boolean): void {
  if (removeMissing) for (const f of [...fields.keys()]) if (!(f in next)) fields.delete(f);
  for (const [f, v] of Object.entries(next)) if (!fields.has(f) || !sameJson(fields.get(f), v)) fields.set(f, v);
}

export class Namespace {
  readonly #entities: Y.Map<Y.Map<Json>>;

  constructor(
    readonly name: string,
    readonly doc: Y.Doc,
    /** Resolves once the namespace has synced with the room at least once. */
    readonly ready: Promise<void>,
  ) {
    this.#entities = doc.getMap("entities");
  }

  get(key: string): Entity | undefined {
    return this.#entities.get(key)?.toJSON() as Entity | undefined;
  }

  has(key: string): boolean {
    return this.#entities.has(key);
  }

  keys(): string[] {
    return [...this.#entities.keys()];
  }

  entries(): [string, Entity][] {
    return [...this.#entities.entries()].map(([k, v]) => [k, v.toJSON() as Entity]);
  }

  get size(): number {
    return this.#entities.size;
  }

  toJSON(): Record<string, Entity> {
    return Object.fromEntries(this.entries());
  }

  /** Replaces the entity: fields missing from `value` are removed. */
  set(key: string, value: Entity): void {
    const next = checkEntity(key, value);
    this.doc.transact(() => {
      const fields = this.#entities.get(key);
      if (fields) writeFields(fields, next, true);
      else {
        this.#entities.set(key, new Y.Map<Json>(Object.entries(next)));
      }
    });
  }

  /**
   * Merges `patch` into the entity (a field set to `undefined` is removed), or applies `fn`
   * to the current value. Only changed fields are written, so concurrent updates of other
   * fields survive.
   */
  update(key: string, patch: Partial<Entity> | ((current: Entity | undefined) => Entity)): void {
    this.doc.transact(() => {
      const current = this.get(key);
      if (typeof patch === "function") {
        const next = checkEntity(key, patch(current));
        if (current) writeFields(this.#entities.get(key) as Y.Map<Json>, next, true);
        else this.set(key, next);
        return;
      }
      const removed = Object.keys(patch).filter((f) => patch[f] === undefined);
      const defined = checkEntity(key, Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)));
      const fields = this.#entities.get(key);
      if (!fields) return this.set(key, defined);
      writeFields(fields, defined, false);
      for (const f of removed) fields.delete(f);
    });
  }

  delete(key: string): boolean {
    if (!this.#entities.has(key)) return false;
    this.#entities.delete(key);
    return true;
  }

  /** Runs `fn` as one Yjs transaction: one update on the wire, one observe call. */
  transact<T>(fn: () => T): T {
    let out: T | undefined;
    this.doc.transact(() => {
      out = fn();
    });
    return out as T;
  }

  /** Calls `fn` after every change with the entity keys that changed. Returns an unsubscribe. */
  observe(fn: (change: StateChange) => void): () => void {
    const handler = (events: Y.YEvent<Y.AbstractType<unknown>>[], txn: Y.Transaction) => {
      const keys = new Set<string>();
      for (const event of events) {
        if (event.target === this.#entities) for (const k of (event as Y.YMapEvent<unknown>).keysChanged) keys.add(k);
        else if (typeof event.path[0] === "string") keys.add(event.path[0]);
      }
      if (keys.size > 0) fn({ keys: [...keys], local: txn.local });
    };
    this.#entities.observeDeep(handler);
    return () => this.#entities.unobserveDeep(handler);
  }
}
