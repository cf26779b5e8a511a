/**
 * Who may do what: the one function every access to the room passes through. Today it allows
 * everything — identity is whatever the connect URL claims — so the room behaves as before.
 * It exists so that signed identities and per-role permissions (a later issue) fill in this
 * function and nothing else: `dispatch.ts` asks it before every control frame, every Yjs
 * sync message of an agent or a stock Yjs client and every awareness message; `http.ts`
 * asks it before every HTTP read.
 *
 * Not a place for integrity rules that hold whoever asks (clients never write `log/*`
 * documents: `DocHub` enforces that, for every caller).
 */
import type { ClientFrame, DocName, ErrorBody } from "../protocol/index.ts";

/**
 * Who asks: an agent or stock Yjs client as admitted (`admission.ts`), or the verified
 * identity of an HTTP request; null when there is none (no token).
 */
export type Principal = { readonly agent: string; readonly role: string; readonly scope?: readonly string[] } | null;

/**
 * - `read`: a Yjs sync step 1 (open a document and receive it), or an HTTP GET.
 * - `write`: a Yjs sync step 2 or update (change a document).
 * - `send`: a control frame, or a stock client's awareness message to a document's peers.
 */
export type Op = "read" | "write" | "send";

/** What is accessed: the control frame itself (its fields name streams, leases, targets), a document, or an HTTP path. */
export type Resource = { frame: ClientFrame } | { doc: DocName } | { http: string };

/** Null to allow; otherwise the refusal (FORBIDDEN or UNAUTHORIZED) the caller gets. */
export function authorize(_who: Principal, _op: Op, _resource: Resource): ErrorBody | null {
  return null;
}
