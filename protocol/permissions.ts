/**
 * Permissions: the grammar of a team's policy, its zod schema, and the matcher both the room
 * (which decides) and the client (which refuses a forbidden operation before sending it) run.
 *
 * A rule is `<action>:<resource pattern>` (or a bare `<action>`, meaning every resource):
 *
 * | action             | resource                                                           |
 * | ------------------ | ------------------------------------------------------------------ |
 * | `state.read`       | namespace                                                          |
 * | `state.write`      | namespace                                                          |
 * | `stream.subscribe` | `<stream>` (every type, and the raw log document) or `<stream>/<type>` |
 * | `stream.publish`   | `<stream>/<type>` (or `<stream>`: every type)                      |
 * | `rpc.call`         | `<target>/<method>`; target: an agent id, or `@<role>`             |
 * | `rpc.serve`        | method                                                             |
 * | `inbox.send`       | `<target>/<method>`, as for calls                                  |
 * | `lease.acquire`    | lease name (also renew and release)                                |
 * | `presence.write`   | the agent's own id                                                 |
 * | `http.read`        | `info`, `agents`, `metrics`, `state/<ns>`, `history/<stream>`          |
 * | `policy.admin`     | none: read (also `GET …/policy`) and change the team's policy     |
 *
 * Patterns are NATS-style. A resource is fields separated by `/` (which no name can contain,
 * `nameSchema`), each field tokens separated by `.`: `main.dlq/deal.closed` is the fields
 * `main.dlq` and `deal.closed`. In a pattern `*` matches one token and `>` the rest of its
 * field (one or more tokens); a pattern with fewer fields than the resource covers all
 * that lies below (`stream.subscribe:main` covers `main/deal.closed`), so `>` alone covers
 * everything. Actions match the same way (`state.*`, `>`). `{sub}` stands for the agent's
 * own id, substituted literally (ids cannot contain `*`, `>`, `/`), so it only ever names
 * that agent's resources: `state.write:{sub}` is its own namespace.
 *
 * Decision: deny wins; nothing allowed is denied (default deny). A token's `scope`
 * narrows further: also one of its patterns must allow. The matcher never throws; a rule it
 * cannot read allows nothing and, as a deny, denies everything (fail closed).
 */
import { z } from "zod";
import { CrosstalkError } from "./errors.ts";

/** Every action and what its resource is (docs and the policy's typo check). */
export const ACTIONS = {
  "state.read": "namespace",
  "state.write": "namespace",
  "stream.subscribe": "<stream> or <stream>/<type pattern>",
  "stream.publish": "<stream>/<type>",
  "rpc.call": "<target>/<method> (target: agent id or @role)",
  "rpc.serve": "<method>",
  "inbox.send": "<target>/<method> (target: agent id or @role)",
  "lease.acquire": "<lease name>",
  "presence.write": "<agent id>",
  "http.read": "info | agents | metrics | state/<ns> | history/<stream>",
  "policy.admin": "(none)",
} as const;
export type Action = keyof typeof ACTIONS;
const ACTION_NAMES = Object.keys(ACTIONS) as Action[];

/** The template for the agent's own id. */
export const SUB = "{sub}";
/** The longest rule or scope entry. */
export const MAX_RULE_CHARS = 300;

// ---------------------------------------------------------------------------------------
// Resources

/** The resource a call or inbox message targets: `legal-1/quote`, `@legal/quote` for a role. */
export const targetResource = (to: string | { role: string }, method: string): string =>
  `${typeof to === "string" ? to : `@${to.role}`}/${method}`;
/** One event type of a stream (or a type pattern: checked with `pattern: true`). */
export const typeResource = (stream: string, type: string): string => `${stream}/${type}`;
/** Every type of a stream: what reading its raw log document needs. */
export const wholeStream = (stream: string): string => `${stream}/>`;

// ---------------------------------------------------------------------------------------
// Rules

type Fields = string[][];
/** A parsed rule. `fields` null: no resource (every resource). */
type Compiled = { readonly action: string[]; readonly fields: Fields | null } | { readonly broken: true };

const LITERAL = /^[^\s.*>/{}]+$/;
const ACTION_TOKEN = /^([a-z]+|\*|>)$/;

const tokens = (s: string): string[] => s.split(".");
const fieldsOf = (s: string): Fields => s.split("/").map(tokens);

/** Why `rule` is not a valid rule, or null. Never throws. */
export function ruleProblem(rule: unknown): string | null {
  if (typeof rule !== "string") return "a rule is a string";
  if (rule.length === 0 || rule.length > MAX_RULE_CHARS) return `a rule has 1 to ${MAX_RULE_CHARS} characters`;
  const colon = rule.indexOf(":");
  const action = colon < 0 ? rule : rule.slice(0, colon);
  const actionTokens = tokens(action);
  if (!actionTokens.every((t) => ACTION_TOKEN.test(t)) || !validWildcards(actionTokens))
    return `"${action}" is not an action pattern (dotted lowercase words, * or a final >)`;
  if (!ACTION_NAMES.some((a) => tokenMatch(actionTokens, tokens(a), "exact")))
    return `"${action}" matches no action (${ACTION_NAMES.join(", ")})`;
  if (colon < 0) return null;
  const resource = rule.slice(colon + 1);
  if (resource.length === 0) return "the resource after ':' is empty (leave out ':' for every resource)";
  for (const field of resource.split("/")) {
    const ts = tokens(field);
    for (const t of ts) {
      if (t === "*" || t === ">") continue;
      const literal = t.replaceAll(SUB, "x");
      if (!LITERAL.test(literal))
        return `"${t}" in "${resource}" is not a token (no spaces or empty tokens; * and > stand alone; {sub} is the only template)`;
    }
    if (!validWildcards(ts)) return `"${field}" in "${resource}": > must be the last token of its field`;
  }
  return null;
}

function validWildcards(ts: string[]): boolean {
  const i = ts.indexOf(">");
  return i < 0 || i === ts.length - 1;
}

/** Parses a rule with `{sub}` already bound; an unreadable rule compiles to `broken`. */
function compile(rule: string): Compiled {
  if (ruleProblem(rule.replaceAll(SUB, "x")) !== null) return { broken: true };
  const colon = rule.indexOf(":");
  if (colon < 0) return { action: tokens(rule), fields: null };
  return { action: tokens(rule.slice(0, colon)), fields: fieldsOf(rule.slice(colon + 1)) };
}

/** Binds `{sub}` to the agent's id (literally: ids hold no wildcards or `/`). */
export const bindSub = (rule: string, agent: string): string => rule.replaceAll(SUB, agent);

// ---------------------------------------------------------------------------------------
// Matching

/**
 * - `exact`: the resource is one concrete thing; its tokens are literals.
 * - `covers`: the resource is itself a pattern (a subscription's type pattern); the rule
 *   must match everything it could match.
 * - `overlaps`: the resource is a pattern; the rule matches something it could match.
 */
type Mode = "exact" | "covers" | "overlaps";

/** NATS matching of one field's tokens. */
function tokenMatch(p: readonly string[], r: readonly string[], mode: Mode): boolean {
  for (let i = 0; i < p.length; i++) {
    const pt = p[i];
    const rt = r[i];
    if (pt === ">") return r.length > i;
    if (rt === undefined) return false;
    if (mode !== "exact" && rt === ">") return mode === "overlaps";
    if (pt === "*") continue;
    if (mode === "overlaps" && rt === "*") continue;
    if (pt !== rt) return false;
  }
  return p.length === r.length;
}

function fieldsMatch(p: Fields | null, r: Fields, mode: Mode): boolean {
  if (p === null) return true;
  // A pattern with more fields than the resource: only a pattern resource can overlap it
  // (denying `main/deal.secret` overlaps reading all of `main`).
  if (p.length > r.length) {
    if (mode !== "overlaps") return false;
    if (r.at(-1)?.at(-1) !== ">") return false;
  }
  const n = Math.min(p.length, r.length);
  for (let i = 0; i < n; i++) {
    if (!tokenMatch(p[i] as string[], r[i] as string[], mode)) return false;
  }
  return true;
}

function ruleMatches(rule: Compiled, action: string[], resource: Fields, mode: Mode, broken: boolean): boolean {
  if ("broken" in rule) return broken;
  return tokenMatch(rule.action, action, "exact") && fieldsMatch(rule.fields, resource, mode);
}

// ---------------------------------------------------------------------------------------
// Effective permissions

/**
 * What one agent may do, as the room computed it and the welcome frame carries it: its
 * role's rules (the `*` entry's and its own role's, `{sub}` bound to its id) and its
 * token's scope, if it has one. Effective = role rules ∩ scope.
 */
export const permissionsSchema = z.object({
  allow: z.array(z.string().max(MAX_RULE_CHARS)).max(2000),
  deny: z.array(z.string().max(MAX_RULE_CHARS)).max(2000),
  /** The token's narrowing: one of these must allow too. Absent: no narrowing. */
  scope: z.array(z.string().max(MAX_RULE_CHARS)).max(64).optional(),
});
export type Permissions = z.infer<typeof permissionsSchema>;

/** Everything allowed, nothing denied: what a client assumes of a room that sends no permissions. */
export const ALLOW_ALL: Permissions = { allow: [">"], deny: [] };

/** Compiled {@link Permissions}, asked per access. Never throws. */
export class Grants {
  readonly #allow: Compiled[];
  readonly #deny: Compiled[];
  readonly #scope: Compiled[] | null;

  constructor(readonly permissions: Permissions) {
    const list = (rules: unknown) => (Array.isArray(rules) ? rules.map((r) => compileSafe(r)) : []);
    this.#allow = list(permissions?.allow);
    this.#deny = list(permissions?.deny);
    this.#scope = Array.isArray(permissions?.scope) ? list(permissions.scope) : null;
  }

  /**
   * May the agent do `action` on `resource`? With `pattern`, the resource is a pattern
   * (a subscription's type pattern) and must be allowed as a whole: every allow covers
   * all of it, and no deny touches any of it.
   */
  permits(action: Action | string, resource: string, options: { pattern?: boolean } = {}): boolean {
    try {
      const a = tokens(String(action));
      const r = fieldsOf(String(resource));
      const pattern = options.pattern === true;
      if (this.#deny.some((rule) => ruleMatches(rule, a, r, pattern ? "overlaps" : "exact", true))) return false;
      const allowed = (rules: Compiled[]) =>
        rules.some((rule) => ruleMatches(rule, a, r, pattern ? "covers" : "exact", false));
      return allowed(this.#allow) && (this.#scope === null || allowed(this.#scope));
    } catch {
      return false;
    }
  }

  /**
   * Could any resource matching `pattern` be permitted (e.g. some type of a stream)? An
   * over-approximation for admitting a filtered read: each item is then checked with
   * {@link permits}. False when a deny covers all of it or no allow touches it.
   */
  reaches(action: Action | string, pattern: string): boolean {
    try {
      const a = tokens(String(action));
      const r = fieldsOf(String(pattern));
      if (this.#deny.some((rule) => ruleMatches(rule, a, r, "covers", true))) return false;
      const touched = (rules: Compiled[]) => rules.some((rule) => ruleMatches(rule, a, r, "overlaps", false));
      return touched(this.#allow) && (this.#scope === null || touched(this.#scope));
    } catch {
      return false;
    }
  }
}

function compileSafe(rule: unknown): Compiled {
  return typeof rule === "string" ? compile(rule) : { broken: true };
}

// ---------------------------------------------------------------------------------------
// Policy documents

const ruleSchema = z.string().superRefine((rule, ctx) => {
  const problem = ruleProblem(rule);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

const roleRulesSchema = z
  .object({
    allow: z.array(ruleSchema).max(500).default([]),
    deny: z.array(ruleSchema).max(500).default([]),
  })
  .strict();

/**
 * How much of a stream's archive (what lies below its live window) the room keeps. Only an
 * admin sets it: it is part of the policy (`policy.set` needs `policy.admin`). A rule is
 * chosen per stream by its key: the stream's name, else the first pattern (NATS style over
 * the name's `.` tokens) that matches it. See `party/retention.ts` for what is removed when.
 */
export const retentionRuleSchema = z
  .object({
    /** Archived events older than this (ms) may go. */
    maxAgeMs: z.number().int().positive().optional(),
    /** Keep at least the newest this many events; older archived ones may go. */
    maxEvents: z.number().int().positive().optional(),
    /** Archived events may go while the archive stores more than this (bytes of JSON). */
    maxBytes: z.number().int().positive().optional(),
    /** Keyed streams: an archived event whose key has a newer event may go (Kafka's compaction). */
    compact: z.boolean().optional(),
    /**
     * Default true: nothing a durable consumer, consumer group or projection has not yet
     * acknowledged is removed (retention waits, and reports what it holds). False: the rules
     * apply regardless, and a consumer left behind gets `EVENTS_REMOVED`.
     */
    holdForConsumers: z.boolean().optional(),
  })
  .strict();
export type RetentionRule = z.infer<typeof retentionRuleSchema>;

/** The role key that applies to every role (no role can be named `*`). */
export const EVERY_ROLE = "*";

/**
 * A team's policy: per role, rules that allow and rules that deny. The `*` entry applies to
 * every role, on top of its own entry. A role with no entry has the `*` rules only.
 */
export const policySchema = z
  .object({
    roles: z
      .record(z.string().regex(/^(\*|[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127})$/, "a role name or *"), roleRulesSchema)
      .refine((roles) => Object.keys(roles).length <= 100, "at most 100 roles"),
    /** Per-stream archive retention, by stream name or pattern (see {@link retentionRuleSchema}). */
    retention: z
      .record(z.string().min(1).max(200), retentionRuleSchema)
      .refine((rules) => Object.keys(rules).length <= 100, "at most 100 retention rules")
      .optional(),
  })
  .strict();
export type Policy = z.infer<typeof policySchema>;
export type PolicyInput = z.input<typeof policySchema>;

/** A policy that does not parse: INVALID_ARGUMENT, with every problem by path. */
export class PolicyError extends CrosstalkError {
  constructor(readonly issues: { path: string; message: string }[]) {
    super(
      "INVALID_ARGUMENT",
      `invalid policy: ${issues
        .slice(0, 5)
        .map((i) => `${i.path || "(root)"}: ${i.message}`)
        .join("; ")}`,
      { issues },
    );
  }
}

/** Parses an untrusted policy document. Never throws. */
export function parsePolicy(input: unknown): { ok: true; policy: Policy } | { ok: false; error: PolicyError } {
  let result: ReturnType<typeof policySchema.safeParse>;
  try {
    result = policySchema.safeParse(input);
  } catch {
    return { ok: false, error: new PolicyError([{ path: "", message: "not a policy document" }]) };
  }
  if (result.success) return { ok: true, policy: result.data };
  const issues = result.error.issues
    .slice(0, 50)
    .map((i) => ({ path: i.path.map(String).join("."), message: i.message }));
  return { ok: false, error: new PolicyError(issues) };
}

/** The effective permissions of `agent` in `role` under `policy`, narrowed by a token's `scope`. */
export function permissionsOf(
  policy: Policy,
  who: { agent: string; role: string; scope?: readonly string[] | undefined },
): Permissions {
  const entries = [policy.roles[EVERY_ROLE], who.role === EVERY_ROLE ? undefined : policy.roles[who.role]];
  const bind = (rules: readonly string[]) => rules.map((r) => bindSub(r, who.agent));
  const permissions: Permissions = {
    allow: bind(entries.flatMap((e) => e?.allow ?? [])),
    deny: bind(entries.flatMap((e) => e?.deny ?? [])),
  };
  if (who.scope) permissions.scope = bind(who.scope);
  return permissions;
}
