/**
 * Who may do what: the one function every access to the room passes through.
 * `dispatch.ts` asks it before every control frame, every Yjs sync message of an agent or a
 * stock Yjs client and every awareness message; `http.ts` asks it before every HTTP read.
 * It decides from the principal's `grants` — its effective permissions under the team's
 * policy (`team-policy.ts` computes them, `protocol/permissions.ts` matches them) — and
 * from nothing else, so it is pure and synchronous.
 *
 * Every client frame type maps to the (action, resource) checks it needs ({@link frameChecks},
 * exhaustive over frame types: a new frame without an entry does not compile). Answers that
 * list things (history pages, trace results, feeds) are filtered per item by the modules
 * with the same grants (`canRead*` below).
 *
 * Not a place for integrity rules that hold whoever asks (clients never write `log/*`
 * documents: `DocHub` enforces that, for every caller; only a call's callee may answer it:
 * the router checks that).
 */
import {
  type Action,
  AUDIT_STREAM,
  type ClientFrame,
  type ClientFrameOf,
  type ClientFrameType,
  type DocName,
  type ErrorBody,
  type Grants,
  type StoredEvent,
  targetResource,
  typeResource,
  wholeStream,
} from "../protocol/index.ts";

/**
 * Who asks: an agent or stock Yjs client as admitted (`admission.ts`), or the verified
 * identity of an HTTP request; null when there is none (no token). `grants` are its
 * effective permissions, set by the room (`TeamPolicy.bind`); without them it may do nothing.
 */
export type Principal = {
  readonly agent: string;
  readonly role: string;
  readonly scope?: readonly string[];
  readonly grants?: Grants;
} | null;

/**
 * - `read`: a Yjs sync step 1 (open a document and receive it), or an HTTP GET.
 * - `write`: a Yjs sync step 2 or update (change a document).
 * - `send`: a control frame, or a stock client's awareness message to a document's peers.
 */
export type Op = "read" | "write" | "send";

/** What is accessed: the control frame itself (its fields name streams, leases, targets), a document, or an HTTP path. */
export type Resource = { frame: ClientFrame } | { doc: DocName } | { http: string };

/**
 * One check: `action` on `resource`. `pattern`: the resource is a subscription pattern,
 * allowed only as a whole. `reach`: some of it must be allowed (the answer is then filtered
 * per item).
 */
type Check = { action: Action; resource: string; how?: "pattern" | "reach" };

const reachStream = (stream: string): Check => ({
  action: "stream.subscribe",
  resource: wholeStream(stream),
  how: "reach",
});

/**
 * The checks of every client frame type. Frames with none: leaving, closing, acking and
 * answering only ever touch what is the sender's own (the modules check ownership: a
 * group ack needs membership, an `rpc.result` must come from the call's callee, a message
 * ack deletes from the sender's own inbox).
 */
const frameChecks: { readonly [K in ClientFrameType]: (frame: ClientFrameOf<K>, agent: string) => Check[] } = {
  publish: (f) => f.events.map((e) => ({ action: "stream.publish", resource: typeResource(f.stream, e.type) })),
  history: (f) => [reachStream(f.stream)],
  "consumer.get": (f) => [reachStream(f.stream)],
  "consumer.ack": (f) => [reachStream(f.stream)],
  "consumers.list": (f) => [reachStream(f.stream)],
  // The room leases a group's events without reading them through the agent's eyes, so the
  // group's whole pattern must be readable.
  "group.join": (f) => [{ action: "stream.subscribe", resource: typeResource(f.stream, f.pattern), how: "pattern" }],
  "group.leave": () => [],
  "group.ack": () => [],
  "group.nak": () => [],
  "state.setIf": (f) => [{ action: "state.write", resource: f.ns }],
  "lease.acquire": (f) => [{ action: "lease.acquire", resource: f.name }],
  "lease.renew": (f) => [{ action: "lease.acquire", resource: f.name }],
  "lease.release": (f) => [{ action: "lease.acquire", resource: f.name }],
  // Without `streams`, only the streams the agent may read are searched (`trace.ts`).
  "trace.get": (f) => (f.streams ?? []).map(reachStream),
  "doc.close": () => [],
  "rpc.handle": (f) => f.methods.map((m) => ({ action: "rpc.serve", resource: m })),
  "rpc.call": (f) => [{ action: "rpc.call", resource: targetResource(f.to, f.method) }],
  "rpc.progress": () => [],
  "rpc.send": (f) => [{ action: "inbox.send", resource: targetResource(f.to, f.method) }],
  "rpc.message.ack": () => [],
  "rpc.cancel": () => [],
  "rpc.result": () => [],
  "presence.set": (_f, agent) => [{ action: "presence.write", resource: agent }],
  leave: () => [],
  "policy.get": () => [{ action: "policy.admin", resource: "policy" }],
  "policy.set": () => [{ action: "policy.admin", resource: "policy" }],
  "feed.open": (f) => [
    reachStream(f.stream),
    { action: "stream.subscribe", resource: typeResource(f.stream, f.pattern), how: "reach" },
  ],
  "feed.close": () => [],
  ping: () => [],
  read: () => [],
};

/** Null to allow; otherwise the refusal (FORBIDDEN or UNAUTHORIZED) the caller gets. */
export function authorize(who: Principal, op: Op, resource: Resource): ErrorBody | null {
  if (!who) return { code: "UNAUTHORIZED", message: "no verified identity: present a token" };
  const grants = who.grants;
  if (!grants) return { code: "FORBIDDEN", message: `${who.agent} has no permissions in this room` };
  let checks: Check[];
  let target: string | null = null;
  if ("frame" in resource) {
    const frame = resource.frame;
    // The audit stream is the room's record of what agents did: none may write it, admins included.
    if (frame.type === "publish" && frame.stream === AUDIT_STREAM) {
      return {
        code: "FORBIDDEN",
        message: `${AUDIT_STREAM} is the room's audit stream: only the room appends to it; nothing was applied`,
        details: { action: "stream.publish", resource: AUDIT_STREAM },
      };
    }
    const of = frameChecks[frame.type] as (f: ClientFrame, agent: string) => Check[];
    checks = of(frame, who.agent);
  } else if ("doc" in resource) {
    checks = docChecks(op, resource.doc);
    target = `${op} document ${resource.doc}`;
  } else {
    checks = httpChecks(resource.http);
  }
  for (const check of checks) {
    if (!passes(grants, check)) return forbidden(who, check, target);
  }
  return null;
}

function passes(grants: Grants, { action, resource, how }: Check): boolean {
  if (how === "reach") return grants.reaches(action, resource);
  return grants.permits(action, resource, { pattern: how === "pattern" });
}

/** Names what was refused (the asker's own request: nothing it did not already know). */
function forbidden(who: NonNullable<Principal>, { action, resource, how }: Check, target: string | null): ErrorBody {
  const what = how === "reach" ? `any of ${resource}` : resource;
  const doing = target ? `${target} (${action} ${what})` : `${action} ${what}`;
  return {
    code: "FORBIDDEN",
    message: `role ${who.role} may not ${doing}; nothing was applied`,
    details: { action, resource },
  };
}

/**
 * A document: `state/<ns>` is read and written by namespace; `log/<stream>` carries every
 * type of the stream, so reading it needs all of them (agents allowed some types read a
 * filtered feed instead). Writing a log is refused to everyone by `DocHub`, not here. A stock
 * client's awareness messages go to the document's readers, so they need read access.
 */
function docChecks(op: Op, doc: DocName): Check[] {
  const slash = doc.indexOf("/");
  const kind = doc.slice(0, slash);
  const name = doc.slice(slash + 1);
  if (kind === "state") return [{ action: op === "write" ? "state.write" : "state.read", resource: name }];
  if (op === "write") return [];
  return [{ action: "stream.subscribe", resource: wholeStream(name), how: "pattern" }];
}

/**
 * An HTTP path `/parties/<party>/<team>/<view…>`: `http.read` of the view (`info` for the
 * team itself), plus the data permission the view shows (a namespace, a stream's history),
 * or `policy.admin` for the policy.
 */
function httpChecks(pathname: string): Check[] {
  let parts: string[];
  try {
    parts = pathname.split("/").filter(Boolean).map(decodeURIComponent).slice(3);
  } catch {
    return [{ action: "http.read", resource: pathname }];
  }
  const [view, name] = parts;
  if (view === undefined) return [{ action: "http.read", resource: "info" }];
  // The policy, backups (the whole team) and retention (what is deleted) are the admin's.
  if (view === "policy" || view === "backup" || view === "retention")
    return [{ action: "policy.admin", resource: "policy" }];
  // The A2A gateway: reaching it needs `http.read:a2a`; each call it makes is checked as the
  // caller's own `rpc.call` / `inbox.send` (party/a2a.ts).
  if (view === "a2a") return [{ action: "http.read", resource: "a2a" }];
  if (view === "state" && name !== undefined)
    return [
      { action: "http.read", resource: `state/${name}` },
      { action: "state.read", resource: name },
    ];
  if (view === "streams" && name !== undefined)
    return [
      { action: "http.read", resource: `history/${name}` },
      { action: "stream.subscribe", resource: wholeStream(name), how: "pattern" },
    ];
  return [{ action: "http.read", resource: parts.join("/") }];
}

// ---------------------------------------------------------------------------------------
// Per-item filters for answers that list things

/** May `who` read this event (its stream and type)? */
export const canReadEvent = (who: Principal, event: Pick<StoredEvent, "stream" | "type">): boolean =>
  who?.grants?.permits("stream.subscribe", typeResource(event.stream, event.type)) ?? false;

/** May `who` read every type of `stream` (then no per-event check is needed)? */
export const canReadStream = (who: Principal, stream: string): boolean =>
  who?.grants?.permits("stream.subscribe", wholeStream(stream), { pattern: true }) ?? false;

/** May `who` read every event of `stream` that `pattern` matches (a consumer group's)? */
export const canReadPattern = (who: Principal, stream: string, pattern: string): boolean =>
  who?.grants?.permits("stream.subscribe", typeResource(stream, pattern), { pattern: true }) ?? false;

/** May `who` read some type of `stream` (its name may appear in what `who` is shown)? */
export const canReachStream = (who: Principal, stream: string): boolean =>
  who?.grants?.reaches("stream.subscribe", wholeStream(stream)) ?? false;

/** May `who` see the team's operator views (every call and message in a trace)? */
export const isOperator = (who: Principal): boolean => who?.grants?.permits("policy.admin", "policy") ?? false;
