/**
 * Shared state: a namespace is a map of entities (JSON objects) in the document
 * `state/<ns>`, synced with every agent that opens it. Layout and merge rules: `entities.ts`.
 *
 * With a zod schema, local writes are validated before they apply (INVALID_ARGUMENT on the
 * writer), and entities that arrive from other agents and fail the schema are reported
 * through the `invalid` event — `get` then returns undefined for them rather than handing
 * malformed data to typed code; `raw` still shows what is stored.
 *
 * Permissions: a write this agent may not make (`state.write` of the namespace, as the room
 * last said) throws FORBIDDEN before it touches the document. A write the room refuses
 * anyway (the policy changed while it travelled) is reported with the `refused` event, and
 * the namespace starts over from the room's copy (a fresh Yjs document under a new client
 * id, which `ready` waits for again): it never keeps data the room does not have.
 */
import { ObservableV2 } from "lib0/observable";
import type * as Y from "yjs";
import type { z } from "zod";
import {
  type CrosstalkError,
  changedEntities,
  checkEntity,
  checkKey,
  deleteEntity,
  type Entity,
  EntityIndex,
  type EntityMeta,
  fieldKey,
  fieldsMap,
  type Json,
  metaMap,
  writeEntity,
} from "../protocol/index.ts";
import { check } from "./check.ts";

export type { Entity, EntityMeta, Json };

export type StateChange = {
  /** Entity keys whose value changed (set, updated or deleted). */
  keys: string[];
  /** True when the change was made by this client, false when it came from the room. */
  local: boolean;
};

export type InvalidEntity = { key: string; issues: unknown; value: Entity };

type NamespaceEvents = {
  change: (change: StateChange) => void;
  invalid: (report: InvalidEntity) => void;
  /**
   * The room refused a write here (FORBIDDEN, naming the document): it was not applied, and
   * the namespace is syncing afresh from the room (await `ready`). Local writes not yet in
   * the room when this happened are gone; a `change` event lists the keys affected.
   */
  refused: (error: CrosstalkError) => void;
};

export type NamespaceOptions<T extends Entity> = {
  /** Validates every entity written here and read from others. */
  schema?: z.ZodType<T>;
};

/** What a namespace needs from its team: identity, clock, and the room for conditional writes. */
export type NamespaceHost = {
  agent: string;
  now(): number;
  /** Throws FORBIDDEN unless this agent may write namespace `ns`. */
  checkWrite(ns: string): void;
  setIf(ns: string, key: string, expectedVersion: number, value: Entity): Promise<{ version: number }>;
};

export class Namespace<T extends Entity = Entity> extends ObservableV2<NamespaceEvents> {
  #doc: Y.Doc;
  #ready: Promise<void>;
  /**
   * Entity key → field names, built on first use (`#entities`): a first sync of a big
   * namespace would otherwise pay for it before `ready`, whether or not anything reads it.
   */
  #index: EntityIndex | null = null;
  readonly #schema: z.ZodType<T> | undefined;
  /** Validation results by key, dropped when the entity changes. */
  readonly #checked = new Map<string, { ok: true; value: T } | { ok: false }>();

  constructor(
    readonly name: string,
    doc: Y.Doc,
    /** Resolves once the namespace has synced with the room at least once. */
    ready: Promise<void>,
    private readonly host: NamespaceHost,
    options: NamespaceOptions<T> = {},
  ) {
    super();
    this.#schema = options.schema;
    this.#doc = doc;
    this.#ready = ready;
    this.#bind(doc);
  }

  /** The Yjs document behind the namespace (replaced after a refused write). */
  get doc(): Y.Doc {
    return this.#doc;
  }

  /** Resolves once the namespace has synced with the room (again, after a refused write). */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /** The index of the current document, built now if nothing has read it yet. */
  #entities(): EntityIndex {
    this.#index ??= new EntityIndex(this.#doc);
    return this.#index;
  }

  #bind(doc: Y.Doc): void {
    fieldsMap(doc).observe((event, txn) => {
      if (doc !== this.#doc) return;
      const index = this.#index;
      // Nobody to tell and no index to keep: the changed keys are not worked out at all.
      if (!index && !this.#schema && !this._observers.has("change")) return;
      const keys = index ? index.apply(event) : changedEntities(event, doc);
      for (const k of keys) this.#checked.delete(k);
      if (!txn.local && this.#schema) for (const k of keys) this.#validate(k, true);
      if (keys.size > 0) this.emit("change", [{ keys: [...keys], local: txn.local }]);
    });
  }

  /**
   * The room refused a write (`error`), or rebased the document (null): start over on `doc`,
   * a fresh copy syncing from the room. Called by the team (`DocSync.onReset`); not for applications.
   * @internal
   */
  reset(doc: Y.Doc, ready: Promise<void>, error: CrosstalkError | null): void {
    const gone = this.#index || this._observers.has("change") ? [...this.#entities().keys()] : [];
    this.#doc = doc;
    this.#ready = ready;
    this.#index = null;
    this.#bind(doc);
    this.#checked.clear();
    if (gone.length > 0) this.emit("change", [{ keys: gone, local: false }]);
    if (error) this.emit("refused", [error]);
  }

  /** The entity, validated against the schema if there is one (undefined when it fails). */
  get(key: string): T | undefined {
    if (!this.#entities().has(key)) return undefined;
    if (!this.#schema) return this.#entities().read(key) as T;
    const checked = this.#validate(key, false);
    return checked.ok ? checked.value : undefined;
  }

  /** The entity as stored, unvalidated. */
  raw(key: string): Entity | undefined {
    return this.#entities().read(key);
  }

  /** Version, last writer and time of the entity's last write. */
  meta(key: string): EntityMeta | undefined {
    return this.#entities().has(key) ? metaMap(this.doc).get(key) : undefined;
  }

  has(key: string): boolean {
    return this.#entities().has(key);
  }

  keys(): string[] {
    return [...this.#entities().keys()];
  }

  /** Valid entities (all of them without a schema). */
  entries(): [string, T][] {
    const out: [string, T][] = [];
    for (const key of this.#entities().keys()) {
      const value = this.get(key);
      if (value !== undefined) out.push([key, value]);
    }
    return out;
  }

  get size(): number {
    return this.#entities().size;
  }

  /** Every entity as stored. */
  toJSON(): Record<string, Entity> {
    const out: Record<string, Entity> = {};
    for (const key of [...this.#entities().keys()].sort()) out[key] = this.#entities().read(key) as Entity;
    return out;
  }

  /** Replaces the entity: fields missing from `value` are removed. */
  set(key: string, value: T): void {
    this.host.checkWrite(this.name);
    const next = this.#check(checkKey(key), value);
    this.doc.transact(() => writeEntity(this.doc, this.#entities(), key, next, this.#stamp(true)));
  }

  /**
   * Merges `patch` into the entity (a field set to `undefined` is removed), or applies `fn`
   * to the current value. Only changed fields are written, so concurrent updates of other
   * fields survive.
   */
  update(key: string, patch: Partial<T> | ((current: T | undefined) => T)): void {
    this.host.checkWrite(this.name);
    checkKey(key);
    const current = this.#entities().read(key);
    if (typeof patch === "function") {
      const next = this.#check(key, patch(current as T | undefined));
      this.doc.transact(() => writeEntity(this.doc, this.#entities(), key, next, this.#stamp(true)));
      return;
    }
    const removed = Object.keys(patch).filter((f) => (patch as Record<string, unknown>)[f] === undefined);
    const merged: Record<string, unknown> = { ...current, ...patch };
    for (const f of removed) delete merged[f];
    const next = this.#check(key, merged);
    this.doc.transact(() => {
      writeEntity(this.doc, this.#entities(), key, next, this.#stamp(false));
      for (const f of removed) {
        fieldsMap(this.doc).delete(fieldKey(key, f));
        this.#entities().note(fieldKey(key, f), false);
      }
    });
  }

  delete(key: string): boolean {
    this.host.checkWrite(this.name);
    let deleted = false;
    this.doc.transact(() => {
      deleted = deleteEntity(this.doc, this.#entities(), key);
    });
    return deleted;
  }

  /**
   * Replaces the entity only if its version is still `expectedVersion` (0: it must not
   * exist), decided by the room: of several concurrent callers exactly one succeeds; the
   * others get CONFLICT with the current version in `details`.
   */
  async setIf(key: string, expectedVersion: number, value: T): Promise<{ version: number }> {
    this.host.checkWrite(this.name);
    const next = this.#check(checkKey(key), value);
    return this.host.setIf(this.name, key, expectedVersion, next);
  }

  /** Runs `fn` as one Yjs transaction: one update on the wire, one change event. */
  transact<R>(fn: () => R): R {
    this.host.checkWrite(this.name);
    let out: R | undefined;
    this.doc.transact(() => {
      out = fn();
    });
    return out as R;
  }

  /** Calls `fn` after every change with the entity keys that changed. Returns an unsubscribe. */
  observe(fn: (change: StateChange) => void): () => void {
    this.on("change", fn);
    return () => this.off("change", fn);
  }

  #stamp(replace: boolean) {
    return { replace, by: this.host.agent, at: this.host.now() };
  }

  #check(key: string, value: unknown): Entity {
    const entity = checkEntity(key, value);
    if (!this.#schema) return entity;
    return checkEntity(key, check(this.#schema, entity, `entity ${key} (the schema of ${this.name})`));
  }

  #validate(key: string, report: boolean): { ok: true; value: T } | { ok: false } {
    const cached = this.#checked.get(key);
    if (cached) return cached;
    const value = this.#entities().read(key);
    if (!value || !this.#schema) return { ok: false };
    const parsed = this.#schema.safeParse(value);
    const result = parsed.success ? ({ ok: true, value: parsed.data } as const) : ({ ok: false } as const);
    this.#checked.set(key, result);
    if (!parsed.success && report) {
      this.emit("invalid", [{ key, value, issues: JSON.parse(JSON.stringify(parsed.error.issues)) }]);
    }
    return result;
  }
}
