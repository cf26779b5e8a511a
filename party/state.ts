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
  fieldsMap,
  metaMap,
  nameSchema,
  stateDoc,
  writeEntity,
} from "../protocol/index.ts";
import type { RoomContext } from "./context.ts";
import { type DocHub, type HubDoc, ROOM } from "./docs.ts";
import { httpError, type Outcome, type RoomModule } from "./handlers.ts";
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
      fieldsMap(doc.ydoc).observe((event) => void created.apply(event));
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

  /** Applies the write if the version matches; answered once the write is stored. */
  async setIf(session: Session, frame: SetIfFrame): Promise<Outcome<"state.setIf">> {
    const doc = await this.hub.open(stateDoc(frame.ns));
    const index = this.#index(doc);
    const current = index.has(frame.key) ? (metaMap(doc.ydoc).get(frame.key)?.version ?? 0) : 0;
    if (current !== frame.expectedVersion) {
      return {
        error: {
          code: "CONFLICT",
          message: `${frame.ns}/${frame.key} is at version ${current}, not ${frame.expectedVersion}`,
          details: { version: current },
        },
      };
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
    return { later: this.hub.stored(doc).then(() => ({ reply: { version } })) };
  }
}

/** Conditional writes, and a namespace's entities over HTTP (`GET …/<team>/state/<ns>`). */
export const stateModule = (state: SharedState): RoomModule<"state.setIf"> => ({
  frames: { "state.setIf": (session, frame) => state.setIf(session, frame) },
  routes: [
    {
      path: "state/:ns",
      handle: async ({ ns }) => {
        const name = nameSchema.safeParse(ns);
        if (!name.success) return httpError(400, { code: "INVALID_ARGUMENT", message: "invalid namespace" });
        return Response.json(await state.read(name.data));
      },
    },
  ],
});
