/**
 * The permission matcher: examples of the grammar, the policy schema's typed errors, and
 * fast-check properties — deny wins, adding a deny never grants, adding an allow never
 * revokes (nor lifts a deny), the matcher never throws, and `{sub}` only ever grants the
 * agent's own resources.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ACTIONS,
  Grants,
  type Permissions,
  PolicyError,
  parsePolicy,
  permissionsOf,
  ruleProblem,
  targetResource,
  typeResource,
  wholeStream,
} from "./index.ts";

const grants = (allow: string[], deny: string[] = [], scope?: string[]) =>
  new Grants({ allow, deny, ...(scope ? { scope } : {}) });

describe("the grammar", () => {
  it("matches NATS-style: * one token, > the rest of its field", () => {
    const g = grants(["state.read:deals.*", "stream.publish:main/deal.>"]);
    expect(g.permits("state.read", "deals.eu")).toBe(true);
    expect(g.permits("state.read", "deals")).toBe(false);
    expect(g.permits("state.read", "deals.eu.x")).toBe(false);
    expect(g.permits("stream.publish", typeResource("main", "deal.closed"))).toBe(true);
    expect(g.permits("stream.publish", typeResource("main", "deal"))).toBe(false);
    expect(g.permits("stream.publish", typeResource("main.dlq", "deal.closed"))).toBe(false);
  });

  it("tells a dotted stream from a dotted type: / separates them, and no name contains /", () => {
    const g = grants(["stream.subscribe:main.dlq"]);
    expect(g.permits("stream.subscribe", typeResource("main.dlq", "deal.closed"))).toBe(true);
    expect(g.permits("stream.subscribe", typeResource("main", "dlq.deal"))).toBe(false);
    expect(g.permits("stream.subscribe", wholeStream("main.dlq"), { pattern: true })).toBe(true);
    expect(g.permits("stream.subscribe", wholeStream("main"), { pattern: true })).toBe(false);
  });

  it("a stream rule covers every type of it; a type rule does not cover the stream", () => {
    const whole = grants(["stream.subscribe:main"]);
    const some = grants(["stream.subscribe:main/deal.*"]);
    expect(whole.permits("stream.subscribe", wholeStream("main"), { pattern: true })).toBe(true);
    expect(whole.permits("stream.subscribe", typeResource("main", "x.y.z"))).toBe(true);
    expect(some.permits("stream.subscribe", wholeStream("main"), { pattern: true })).toBe(false);
    expect(some.reaches("stream.subscribe", wholeStream("main"))).toBe(true);
    expect(some.reaches("stream.subscribe", wholeStream("other"))).toBe(false);
    expect(some.permits("stream.subscribe", typeResource("main", "deal.*"), { pattern: true })).toBe(true);
    expect(some.permits("stream.subscribe", typeResource("main", "deal.>"), { pattern: true })).toBe(false);
  });

  it("a deny of one type takes reading the whole stream, and every pattern that includes it", () => {
    const g = grants(["stream.subscribe:main"], ["stream.subscribe:main/deal.secret"]);
    expect(g.permits("stream.subscribe", wholeStream("main"), { pattern: true })).toBe(false);
    expect(g.permits("stream.subscribe", typeResource("main", "deal.*"), { pattern: true })).toBe(false);
    expect(g.permits("stream.subscribe", typeResource("main", "deal.open"))).toBe(true);
    expect(g.reaches("stream.subscribe", wholeStream("main"))).toBe(true);
    expect(grants(["stream.subscribe"], ["stream.subscribe:main"]).reaches("stream.subscribe", "main/>")).toBe(false);
  });

  it("names role targets @role, which no agent id can spell", () => {
    const g = grants(["rpc.call:@legal/generateContract", "inbox.send:*/notify"]);
    expect(g.permits("rpc.call", targetResource({ role: "legal" }, "generateContract"))).toBe(true);
    expect(g.permits("rpc.call", targetResource("legal", "generateContract"))).toBe(false);
    expect(g.permits("inbox.send", targetResource("mailer", "notify"))).toBe(true);
    expect(g.permits("inbox.send", targetResource({ role: "x" }, "notify"))).toBe(true);
  });

  it("matches actions as patterns too; a bare action means every resource", () => {
    const g = grants(["state.*:deals", "policy.admin"]);
    expect(g.permits("state.write", "deals")).toBe(true);
    expect(g.permits("stream.publish", "deals/x")).toBe(false);
    expect(g.permits("policy.admin", "policy")).toBe(true);
    expect(grants([">"]).permits("http.read", "metrics")).toBe(true);
  });

  it("narrows by the token's scope: both the role and the scope must allow", () => {
    const g = grants(["state.read", "state.write"], [], ["state.read:deals"]);
    expect(g.permits("state.read", "deals")).toBe(true);
    expect(g.permits("state.write", "deals")).toBe(false);
    expect(g.permits("state.read", "contracts")).toBe(false);
  });

  it("binds {sub} to the agent's own id", () => {
    const policy = parsePolicy({ roles: { "*": { allow: ["state.write:{sub}", "state.write:scratch.{sub}"] } } });
    if (!policy.ok) throw policy.error;
    const g = new Grants(permissionsOf(policy.policy, { agent: "sales-1", role: "sales" }));
    expect(g.permits("state.write", "sales-1")).toBe(true);
    expect(g.permits("state.write", "scratch.sales-1")).toBe(true);
    expect(g.permits("state.write", "sales-2")).toBe(false);
  });
});

describe("policy documents", () => {
  it("parses a good one, with allow and deny defaulting to empty", () => {
    const parsed = parsePolicy({ roles: { "*": { allow: ["state.read"] }, admin: { allow: [">"] } } });
    expect(parsed.ok && parsed.policy.roles["*"]).toEqual({ allow: ["state.read"], deny: [] });
  });

  it("refuses a bad one with a typed error naming every problem by path", () => {
    const parsed = parsePolicy({
      roles: { sales: { allow: ["stat.read:deals", "state.read:de*ls", "state.read:"], deny: ["state.write:a.>.b"] } },
    });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.error).toBeInstanceOf(PolicyError);
    expect(parsed.error.code).toBe("INVALID_ARGUMENT");
    expect(parsed.error.issues.map((i) => i.path)).toEqual([
      "roles.sales.allow.0",
      "roles.sales.allow.1",
      "roles.sales.allow.2",
      "roles.sales.deny.0",
    ]);
    expect(parsed.error.issues[0]?.message).toMatch(/matches no action/);
    for (const bad of [null, 42, "x", { roles: [] }, { roles: { "bad role": {} } }, { roles: {}, extra: 1 }]) {
      expect(parsePolicy(bad).ok).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Properties

const actions = Object.keys(ACTIONS);
const word = fc.constantFrom("main", "deals", "deal", "closed", "legal", "a", "b", "dlq", "x", "@legal", "q");
const token = fc.oneof({ weight: 5, arbitrary: word }, { weight: 1, arbitrary: fc.constantFrom("*", ">") });
const field = fc
  .array(token, { minLength: 1, maxLength: 3 })
  .map((ts) => (ts.includes(">") ? [...ts.slice(0, ts.indexOf(">")), ">"] : ts).join("."));
const resourcePattern = fc.array(field, { minLength: 1, maxLength: 2 }).map((fs) => fs.join("/"));
const concrete = fc
  .array(fc.array(word, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 2 })
  .map((fs) => fs.map((f) => f.join(".")).join("/"));
const actionPattern = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...actions) },
  { weight: 1, arbitrary: fc.constantFrom("state.*", "stream.*", ">", "*.read") },
);
const rule = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(actionPattern, resourcePattern).map(([a, r]) => `${a}:${r}`) },
  { weight: 1, arbitrary: actionPattern },
);
const rules = fc.array(rule, { maxLength: 5 });
const access = fc.record({
  action: fc.constantFrom(...actions),
  resource: fc.oneof(concrete, resourcePattern),
  pattern: fc.boolean(),
});

const permits = (p: Permissions, a: { action: string; resource: string; pattern: boolean }) =>
  new Grants(p).permits(a.action, a.resource, { pattern: a.pattern });

describe("properties", () => {
  it("generated rules are valid rules (the generators test the grammar, not typos)", () => {
    fc.assert(fc.property(rule, (r) => ruleProblem(r) === null));
  });

  it("deny wins: a rule in both lists grants nothing it matches", () => {
    fc.assert(
      fc.property(rules, rule, access, (allow, both, a) => {
        const denied = !permits({ allow: [], deny: [], scope: undefined }, a);
        expect(denied).toBe(true);
        const g = new Grants({ allow: [...allow, both], deny: [both] });
        if (new Grants({ allow: [both], deny: [] }).permits(a.action, a.resource, { pattern: a.pattern })) {
          expect(g.permits(a.action, a.resource, { pattern: a.pattern })).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("adding a deny never grants", () => {
    fc.assert(
      fc.property(rules, rules, rule, access, (allow, deny, extra, a) => {
        const before = permits({ allow, deny }, a);
        const after = permits({ allow, deny: [...deny, extra] }, a);
        expect(after && !before).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  it("adding an allow never revokes, and never lifts what a deny denied", () => {
    fc.assert(
      fc.property(rules, rules, rule, access, (allow, deny, extra, a) => {
        const before = permits({ allow, deny }, a);
        const after = permits({ allow: [...allow, extra], deny }, a);
        expect(before && !after).toBe(false);
        const deniedByDeny = deny.length > 0 && !permits({ allow: [">"], deny }, a);
        if (deniedByDeny) expect(after).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });

  it("a scope only narrows", () => {
    fc.assert(
      fc.property(rules, rules, rules, access, (allow, deny, scope, a) => {
        if (permits({ allow, deny, scope }, a)) expect(permits({ allow, deny }, a)).toBe(true);
      }),
    );
  });

  it("never throws, whatever it is given", () => {
    const anything = fc.oneof(fc.string(), fc.anything());
    fc.assert(
      fc.property(
        fc.array(anything),
        fc.array(anything),
        fc.option(fc.array(anything)),
        anything,
        anything,
        (allow, deny, scope, action, resource) => {
          const g = new Grants({ allow, deny, ...(scope ? { scope } : {}) } as Permissions);
          expect(typeof g.permits(action as string, resource as string)).toBe("boolean");
          expect(typeof g.permits(action as string, resource as string, { pattern: true })).toBe("boolean");
          expect(typeof g.reaches(action as string, resource as string)).toBe("boolean");
          expect(typeof ruleProblem(action)).not.toBe("undefined");
          parsePolicy({ roles: { r: { allow, deny } } });
        },
      ),
      { numRuns: 1000 },
    );
    expect(() => new Grants(null as unknown as Permissions).permits("state.read", "x")).not.toThrow();
  });

  it("an unreadable deny rule denies everything (fail closed); an unreadable allow allows nothing", () => {
    fc.assert(
      fc.property(access, (a) => {
        expect(permits({ allow: [">"], deny: ["nonsense action:x"] }, a)).toBe(false);
        expect(permits({ allow: ["state.read:a b"], deny: [] }, a)).toBe(false);
      }),
    );
  });

  it("{sub} only ever grants the agent's own resources", () => {
    const agent = fc
      .array(fc.constantFrom("a", "b", "sales", "1", "x-2", "legal@eu", "q:r"), { minLength: 1, maxLength: 3 })
      .map((ts) => ts.join("."));
    const template = fc.constantFrom("{sub}", "own.{sub}", "{sub}.inbox", "scratch-{sub}");
    const action = fc.constantFrom("state.read", "state.write", "rpc.serve", "presence.write", "lease.acquire");
    fc.assert(
      fc.property(agent, agent, template, action, (me, other, t, act) => {
        const policy = parsePolicy({ roles: { "*": { allow: [`${act}:${t}`] } } });
        if (!policy.ok) throw policy.error;
        const g = new Grants(permissionsOf(policy.policy, { agent: me, role: "r" }));
        expect(g.permits(act, t.replace("{sub}", me))).toBe(true);
        if (other !== me) expect(g.permits(act, t.replace("{sub}", other))).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });
});
