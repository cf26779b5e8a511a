/**
 * Checks a client's Yjs update against the document it is for, before the room applies it,
 * so that applying it either integrates all of it or is never tried. Yjs trusts updates: it
 * can integrate part of a crafted one and then throw (its `update` event already fired), keep
 * structs whose dependencies it lacks as "pending" (which `encodeStateAsUpdate` then sends to
 * every client), and nest types without bound (a map 5,000 deep makes `toJSON()` throw).
 *
 * The check runs on the decoded update (`Y.decodeUpdate`, V1 only: client bytes never reach
 * a V2 API, whose decoder loops forever on some inputs, yjs#687) and costs one pass over its
 * structs plus a lookup per reference, without copying the document. It refuses:
 * - structs that start above what the document and the update know of their client (a gap),
 *   and Yjs' `Skip` placeholders (a gap inside the update);
 * - a reference (origin, right origin, parent) to a struct neither has, or to a later struct
 *   of the update that Yjs could only integrate after this one (a dependency cycle);
 * - subdocuments (`ContentDoc`), and a delete of clocks nobody has;
 * - types nested deeper than `maxDepth`, and JSON values deeper than `maxJsonDepth`.
 *
 * What passes integrates completely; `docs.ts` still treats a throw or pending structs after
 * applying (a case this check missed) as a broken document and rebuilds it from storage.
 * Not re-exported; used by `docs.ts` and exercised by `test/hostile-yjs.test.ts`.
 */
import * as Y from "yjs";

export type UpdateLimits = {
  /** How deep types may nest (a root type is depth 1). */
  maxDepth: number;
  /** How deep a JSON value inside the document may nest. */
  maxJsonDepth: number;
};

type Struct = Y.Item | Y.GC | Y.Skip;
type Decoded = ReturnType<typeof Y.decodeUpdate>;

/** Null when the update integrates completely into `ydoc`, else why not. */
export function checkUpdate(decoded: Decoded, ydoc: Y.Doc, limits: UpdateLimits): string | null {
  const { structs, ds } = decoded;
  const store = ydoc.store;
  // Each client's structs, in clock order (the decoder yields them so), and where they end.
  const byClient = new Map<number, Struct[]>();
  for (const s of structs) {
    if (s instanceof Y.Skip) return "the update has a gap (a skipped range)";
    const list = byClient.get(s.id.client) ?? [];
    byClient.set(s.id.client, list);
    list.push(s);
  }
  const known = new Map<number, number>();
  for (const [client, list] of byClient) {
    const first = list[0] as Struct;
    const last = list[list.length - 1] as Struct;
    const state = Y.getState(store, client);
    if (first.id.clock > state) return `structs of client ${client} start at ${first.id.clock}, after ${state}`;
    known.set(client, Math.max(state, last.id.clock + last.length));
  }
  /** The update's struct holding `id`, or null when the document already has it; undefined when nobody has it. */
  const find = (id: Y.ID): Struct | null | undefined => {
    if (id.clock < Y.getState(store, id.client)) return null;
    const list = byClient.get(id.client);
    if (!list) return undefined;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = list[mid] as Struct;
      if (id.clock < s.id.clock) hi = mid - 1;
      else if (id.clock >= s.id.clock + s.length) lo = mid + 1;
      else return s;
    }
    return undefined;
  };

  // Every reference resolves, and references inside the update form no cycle: a struct may
  // depend on the update's structs only if they come first in the order Yjs integrates them.
  const deps = new Map<Struct, Struct[]>();
  for (const [, list] of byClient) {
    for (let i = 0; i < list.length; i++) {
      const s = list[i] as Struct;
      const own: Struct[] = i > 0 ? [list[i - 1] as Struct] : [];
      if (s instanceof Y.Item) {
        if (s.content instanceof Y.ContentDoc) return "subdocuments are not supported";
        const refs = [s.origin, s.rightOrigin, s.parent instanceof Y.ID ? s.parent : null];
        for (const ref of refs) {
          if (!ref) continue;
          const target = find(ref);
          if (target === undefined) return `a struct refers to ${ref.client}:${ref.clock}, which nobody has`;
          if (target === s) return "a struct refers to itself";
          if (target) own.push(target);
        }
      }
      deps.set(s, own);
    }
  }
  if (hasCycle(structs as Struct[], deps)) return "the update's structs depend on each other in a cycle";

  for (const [client, ranges] of ds.clients) {
    const top = known.get(client) ?? Y.getState(store, client);
    for (const r of ranges)
      if (r.clock + r.len > top) return `the update deletes ${client}:${r.clock}, which nobody has`;
  }

  return checkDepth(structs as Struct[], ydoc, find, limits);
}

/** Iterative depth-first search for a cycle in the update's dependency graph. */
function hasCycle(structs: Struct[], deps: Map<Struct, Struct[]>): boolean {
  const state = new Map<Struct, number>();
  const DONE = 2;
  const ACTIVE = 1;
  for (const root of structs) {
    if (state.get(root) === DONE) continue;
    const stack: [Struct, number][] = [[root, 0]];
    state.set(root, ACTIVE);
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as [Struct, number];
      const next = (deps.get(top[0]) ?? [])[top[1]++];
      if (next === undefined) {
        state.set(top[0], DONE);
        stack.pop();
        continue;
      }
      const seen = state.get(next);
      if (seen === ACTIVE) return true;
      if (seen === DONE) continue;
      state.set(next, ACTIVE);
      stack.push([next, 0]);
    }
  }
  return false;
}

function itemAt(ydoc: Y.Doc, id: Y.ID): Y.Item | null {
  try {
    const s = Y.getItem(ydoc.store, id);
    return s instanceof Y.Item ? s : null;
  } catch {
    return null;
  }
}

/** How deep a type of the document sits (a root type: 0 for its own entries' container). */
function depthInDoc(type: Y.AbstractType<unknown> | null): number {
  let depth = 0;
  for (let t = type; t?._item; t = t._item.parent as Y.AbstractType<unknown> | null) depth++;
  return depth;
}

/**
 * Refuses types nested deeper than `maxDepth` and JSON deeper than `maxJsonDepth`. Only
 * items that create a type or carry JSON are walked, each through its parents; depths are
 * memoized per struct, so the cost is linear in the update.
 */
function checkDepth(
  structs: Struct[],
  ydoc: Y.Doc,
  find: (id: Y.ID) => Struct | null | undefined,
  limits: UpdateLimits,
): string | null {
  const memo = new Map<Y.Item, number>();
  /**
   * The depth of the type `start` goes into (a root type: 1), walking up through parents
   * (+1 each) and neighbours (same container) without recursion; every link is memoized.
   */
  const containerDepth = (start: Y.Item): number => {
    const chain: [Y.Item, number][] = [];
    let item: Y.Item | null = start;
    let base = 1;
    while (item) {
      const cached = memo.get(item);
      if (cached !== undefined) {
        base = cached;
        break;
      }
      if (chain.length > structs.length) return Number.POSITIVE_INFINITY;
      const parent: unknown = item.parent;
      let next: Y.Item | null = null;
      let step = 0;
      if (typeof parent === "string") base = 1;
      else if (parent instanceof Y.ID) {
        const local = find(parent);
        if (local instanceof Y.Item) [next, step] = [local, 1];
        else {
          const inDoc = itemAt(ydoc, parent);
          base = inDoc ? depthInDoc((inDoc.content as Y.ContentType).type) + 1 : 1;
        }
      } else if (parent instanceof Y.AbstractType) base = depthInDoc(parent) + 1;
      else {
        // No parent named: the neighbour's container.
        const ref: Y.ID | null = item.origin ?? item.rightOrigin;
        const local: Struct | null | undefined = ref ? find(ref) : null;
        if (local instanceof Y.Item) next = local;
        else if (ref) {
          const inDoc = itemAt(ydoc, ref);
          base = inDoc ? depthInDoc(inDoc.parent as Y.AbstractType<unknown>) + 1 : 1;
        }
      }
      chain.push([item, step]);
      item = next;
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      const [link, step] = chain[i] as [Y.Item, number];
      base += step;
      memo.set(link, base);
    }
    return memo.get(start) ?? base;
  };
  for (const s of structs) {
    if (!(s instanceof Y.Item)) continue;
    const content = s.content;
    if (content instanceof Y.ContentType) {
      if (containerDepth(s) + 1 > limits.maxDepth) return `types nest deeper than ${limits.maxDepth}`;
    } else if (content instanceof Y.ContentAny || content instanceof Y.ContentJSON) {
      for (const value of content.arr) {
        if (jsonDepth(value, limits.maxJsonDepth) > limits.maxJsonDepth)
          return `a value nests deeper than ${limits.maxJsonDepth}`;
      }
    } else if (content instanceof Y.ContentEmbed) {
      if (jsonDepth(content.embed, limits.maxJsonDepth) > limits.maxJsonDepth)
        return `a value nests deeper than ${limits.maxJsonDepth}`;
    }
  }
  return null;
}

/** The nesting depth of a JSON value, counted up to `cap + 1`. */
function jsonDepth(value: unknown, cap: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (d > max) max = d;
    if (max > cap) return max;
    if (v !== null && typeof v === "object") {
      for (const child of Object.values(v as object)) stack.push([child, d + 1]);
    }
  }
  return max;
}
