/**
 * What the room does with shared state beyond syncing it: conditional writes. The room is
 * the only place that sees every write in one order, so it decides `setIf`: the entity's
 * version must match, then the room writes the value into its own copy (stamped with the
 * caller's identity and the room clock) and answers once that is stored.
 */
import {
  type ClientFrame,
  type Entity,
  EntityIndex,
  type EntityMeta,
  type ErrorBody,
  fieldsMap,
  metaMap,
  stateDoc,
  writeEntity,
} from "../protocol/index.ts";
import type { RoomContext } from "./context.ts";
import { type DocHub, type HubDoc, ROOM } from "./docs.ts";
import type { Session } from "./session.ts";

type SetIfFrame = Extract<ClientFrame, { type: "state.setIf" }>;

export class SharedState {
  readonly #indexes = new WeakMap<HubDoc, EntityIndex>();

  private readonly hub: DocHub;
  private readonly now: () => number;

  constructor(ctx: RoomContext) {
    ({ hub: this.hub, now: this.now } = ctx);
  }

  #index(doc: HubDoc): EntityIndex {
    let index = this.#indexes.get(doc);
    if (!index) {
      const created = new EntityIndex(doc.ydoc);
      fieldsMap(doc.ydoc).observe((event) => void created.apply(event.changes.keys as never));
      this.#indexes.set(doc, created);
      index = created;
    }
    return index;
  }

  /** Every entity of namespace `ns` with its meta, for `GET …/state/<ns>`. */
  async read(ns: string): Promise<Record<string, { value: Entity; meta: EntityMeta | undefined }>> {
    const doc = await this.hub.open(stateDoc(ns));
    const index = this.#index(doc);
    const out: Record<string, { value: Entity; meta: EntityMeta | undefined }> = {};
    for (const key of [...index.keys()].sort())
      out[key] = { value: index.read(key) as Entity, meta: metaMap(doc.ydoc).get(key) };
    return out;
  }

  async setIf(session: Session, frame: SetIfFrame): Promise<void> {
    const doc = await this.hub.open(stateDoc(frame.ns));
    const index = this.#index(doc);
    const current = index.has(frame.key) ? (metaMap(doc.ydoc).get(frame.key)?.version ?? 0) : 0;
    if (current !== frame.expectedVersion) {
      const error: ErrorBody = {
        code: "CONFLICT",
        message: `${frame.ns}/${frame.key} is at version ${current}, not ${frame.expectedVersion}`,
        details: { version: current },
      };
      return session.sendFrame({ type: "error", ref: frame.ref, error });
    }
    const version = current + 1;
    doc.ydoc.transact(() => {
      writeEntity(doc.ydoc, index, frame.key, frame.value, {
        replace: true,
        by: session.agent,
        at: this.now(),
        version,
      });
    }, ROOM);
    this.hub.afterCommit(doc, () => session.sendFrame({ type: "state.written", ref: frame.ref, version }));
  }
}
