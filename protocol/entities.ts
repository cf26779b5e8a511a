/**
 * The layout of a shared-state document (`state/<ns>`), shared by clients and the room
 * (which writes it for conditional writes and never otherwise).
 *
 * - `fields`: a flat Y.Map from `<entity key> US <field>` to the field's JSON value
 *   (US = U+001F). Every field of every entity is its own map entry, so concurrent writes to
 *   different fields always both survive — even when two agents create the same entity at
 *   once, which a nested Y.Map per entity cannot merge (one of the two maps would win whole).
 *   Two writes to the same field converge on one value on every replica: Yjs keeps the write
 *   of the client with the higher client id (arbitrary but deterministic).
 * - `meta`: entity key → {@link EntityMeta}, rewritten with every write of the entity.
 * - `projections`: projection name → last applied seq (see `projection.ts`).
 *
 * An entity exists while it has at least one field. Deleting it removes its fields and meta;
 * a concurrent update of one of its fields survives the delete, so the entity reappears with
 * just that field (a deterministic outcome on every replica).
 */
import type * as Y from "yjs";
import { CrosstalkError } from "./errors.ts";
import type { Json } from "./schemas.ts";

export type Entity = { [field: string]: Json };
export type EntityMeta = {
  /** Incremented by every write; concurrent writes converge on one of them. */
  version: number;
  /** The agent that wrote last, as it stamped itself (the room stamps it for `setIf`). */
  updatedBy: string;
  /** Writer's clock (room clock for `setIf`), ms since the epoch. */
  updatedAt: number;
};

export const SEP = "\u001f";
export const fieldsMap = (doc: Y.Doc): Y.Map<Json> => doc.getMap("fields");
export const metaMap = (doc: Y.Doc): Y.Map<EntityMeta> => doc.getMap("meta");
export const projectionsMap = (doc: Y.Doc): Y.Map<number> => doc.getMap("projections");

export const fieldKey = (key: string, field: string) => `${key}${SEP}${field}`;
export function splitFieldKey(k: string): [string, string] {
  const i = k.indexOf(SEP);
  return [k.slice(0, i), k.slice(i + 1)];
}

export function checkKey(key: unknown): string {
  if (typeof key !== "string" || key.length === 0 || key.length > 512 || key.includes(SEP)) {
    throw new CrosstalkError(
      "INVALID_ARGUMENT",
      "an entity key must be a non-empty string of at most 512 characters without U+001F",
    );
  }
  return key;
}

/** Entities are JSON objects whose field names are non-empty and free of U+001F. */
export function checkEntity(key: string, value: unknown): Entity {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CrosstalkError("INVALID_ARGUMENT", `entity ${key} must be a JSON object`);
  }
  let json: Entity;
  try {
    json = JSON.parse(JSON.stringify(value)) as Entity;
  } catch (error) {
    throw new CrosstalkError("INVALID_ARGUMENT", `entity ${key} is not JSON: ${(error as Error).message}`);
  }
  for (const field of Object.keys(json)) {
    if (field.length === 0 || field.includes(SEP))
      throw new CrosstalkError("INVALID_ARGUMENT", `entity ${key} has an invalid field name`);
  }
  return json;
}

/**
 * The entity keys one transaction changed in `doc`'s `fields` map (its event), calling `each`
 * for every field it added or removed. A key still there is read from the map, which is much
 * cheaper than `event.changes.keys` (old values and actions for every key: on a first sync, for
 * every field of the namespace); only when a key is gone is Yjs asked whether it was there before.
 */
export function changedEntities(
  event: Y.YMapEvent<Json>,
  doc: Y.Doc,
  each?: (key: string, field: string, present: boolean) => void,
): Set<string> {
  const map = fieldsMap(doc);
  const touched = new Set<string>();
  let actions: Map<string, unknown> | undefined;
  for (const k of event.keysChanged) {
    const item = map._map.get(k);
    if (item && !item.deleted) {
      // Not written by this transaction: only a losing concurrent write was, no change.
      if (!event.adds(item)) continue;
      const [key, field] = splitFieldKey(k);
      each?.(key, field, true);
      touched.add(key);
    } else {
      actions ??= event.changes.keys;
      // Added and removed within the transaction: no change.
      if (!actions.has(k)) continue;
      const [key, field] = splitFieldKey(k);
      each?.(key, field, false);
      touched.add(key);
    }
  }
  return touched;
}

/**
 * An index from entity key to its field names, kept current from the `fields` map's
 * changes, so reading one entity does not scan every field of the namespace.
 */
export class EntityIndex {
  readonly #fields = new Map<string, Set<string>>();

  constructor(private readonly doc: Y.Doc) {
    for (const k of fieldsMap(doc).keys()) this.#add(k);
  }

  /**
   * Applies one transaction's changes to the `fields` map (its event); returns the entity keys
   * that changed (`changedEntities`).
   */
  apply(event: Y.YMapEvent<Json>): Set<string> {
    return changedEntities(event, this.doc, (key, field, present) =>
      present ? this.#addField(key, field) : this.#removeField(key, field),
    );
  }

  /** Records a local write at once, so later reads in the same transaction see it. */
  note(k: string, present: boolean): void {
    if (present) this.#add(k);
    else this.#remove(k);
  }

  #add(k: string): void {
    const [key, field] = splitFieldKey(k);
    this.#addField(key, field);
  }

  #addField(key: string, field: string): void {
    let set = this.#fields.get(key);
    if (!set) {
      set = new Set();
      this.#fields.set(key, set);
    }
    set.add(field);
  }

  #remove(k: string): void {
    const [key, field] = splitFieldKey(k);
    this.#removeField(key, field);
  }

  #removeField(key: string, field: string): void {
    const set = this.#fields.get(key);
    if (!set) return;
    set.delete(field);
    if (set.size === 0) this.#fields.delete(key);
  }

  has(key: string): boolean {
    return this.#fields.has(key);
  }

  keys(): IterableIterator<string> {
    return this.#fields.keys();
  }

  get size(): number {
    return this.#fields.size;
  }

  read(key: string): Entity | undefined {
    const names = this.#fields.get(key);
    if (!names) return undefined;
    const fields = fieldsMap(this.doc);
    const out: Entity = {};
    for (const f of [...names].sort()) out[f] = fields.get(fieldKey(key, f)) as Json;
    return out;
  }

  fieldsOf(key: string): string[] {
    return [...(this.#fields.get(key) ?? [])];
  }
}

const sameJson = (a: unknown, b: unknown): boolean => a === b || JSON.stringify(a) === JSON.stringify(b);

/**
 * Writes `next` as entity `key` inside the caller's transaction, touching only fields whose
 * value changed; with `replace`, fields missing from `next` are removed.
 */
export function writeEntity(
  doc: Y.Doc,
  index: EntityIndex,
  key: string,
  next: Entity,
  options: { replace: boolean; by: string; at: number; version?: number },
): EntityMeta {
  const fields = fieldsMap(doc);
  if (options.replace) {
    for (const f of index.fieldsOf(key)) {
      if (f in next) continue;
      fields.delete(fieldKey(key, f));
      index.note(fieldKey(key, f), false);
    }
  }
  for (const [f, v] of Object.entries(next)) {
    const k = fieldKey(key, f);
    if (!fields.has(k) || !sameJson(fields.get(k), v)) fields.set(k, v);
    index.note(k, true);
  }
  const meta: EntityMeta = {
    version: options.version ?? (metaMap(doc).get(key)?.version ?? 0) + 1,
    updatedBy: options.by,
    updatedAt: options.at,
  };
  metaMap(doc).set(key, meta);
  return meta;
}

export function deleteEntity(doc: Y.Doc, index: EntityIndex, key: string): boolean {
  const names = index.fieldsOf(key);
  if (names.length === 0) return false;
  const fields = fieldsMap(doc);
  for (const f of names) {
    fields.delete(fieldKey(key, f));
    index.note(fieldKey(key, f), false);
  }
  metaMap(doc).delete(key);
  return true;
}
