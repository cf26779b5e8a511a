/**
 * What this agent may do, as the room last said (the `welcome` frame's permissions, then
 * every `permissions` frame after a policy change), so a forbidden operation is refused here
 * with FORBIDDEN — before it touches a Yjs document or sends anything — instead of being
 * sent and refused by the room. The room decides regardless; this only spares the round
 * trip and, for state, a write the room would refuse (which would cost a resync).
 * Not re-exported from the package entry point; `team.ts` owns it.
 */
import { type Action, ALLOW_ALL, CrosstalkError, Grants, type Permissions } from "../protocol/index.ts";

export class Access {
  #grants: Grants | null = null;
  #resolveKnown!: () => void;
  /** Resolves once the room has said what this agent may do (its first welcome). */
  readonly known: Promise<void> = new Promise((resolve) => {
    this.#resolveKnown = resolve;
  });

  /** The room's word; a room that sends none (an older one) is taken to allow everything. */
  update(permissions: Permissions | undefined): void {
    this.#grants = new Grants(permissions ?? ALLOW_ALL);
    this.#resolveKnown();
  }

  /** The effective permissions, once known. */
  get permissions(): Permissions | null {
    return this.#grants?.permissions ?? null;
  }

  /** True until the room says otherwise (before the first welcome nothing is refused here). */
  permits(action: Action, resource: string, options?: { pattern?: boolean }): boolean {
    return this.#grants?.permits(action, resource, options) ?? true;
  }

  /** Could anything under `pattern` be permitted? True until known. */
  reaches(action: Action, pattern: string): boolean {
    return this.#grants?.reaches(action, pattern) ?? true;
  }

  /** Throws FORBIDDEN, naming the resource, unless permitted. */
  check(action: Action, resource: string, options?: { pattern?: boolean }): void {
    if (!this.permits(action, resource, options)) throw forbidden(action, resource);
  }
}

export const forbidden = (action: Action, resource: string): CrosstalkError =>
  new CrosstalkError(
    "FORBIDDEN",
    `this agent may not ${action} ${resource} (its permissions, from the room); nothing was sent`,
    {
      action,
      resource,
    },
  );
