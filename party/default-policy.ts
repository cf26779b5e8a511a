/**
 * The policy a team starts with, until an admin stores another (`policy.set`, or
 * `team.setPolicy(...)`): edit this file to change what every new team gets. The grammar is
 * in `protocol/permissions.ts`; the README's "Permissions" section has examples.
 *
 * Why this default: an agent gets into the room only with a token the team signed, so
 * membership is already proven. Every member may therefore use every primitive — read and
 * write state, publish and subscribe, call, serve and send, take leases — and set its own
 * presence; the operator views (`metrics`, the policy itself) and changing the policy are
 * reserved to the `admin` role. The *matcher* is default-deny: a role, action or resource
 * no rule names gets nothing, so a stricter policy lists what it allows, and denies win.
 */
import type { PolicyInput } from "../protocol/index.ts";

export const defaultPolicy = {
  roles: {
    // Every role (`*`): the whole team's primitives.
    "*": {
      allow: [
        "state.read",
        "state.write",
        "stream.subscribe",
        "stream.publish",
        "rpc.call",
        "rpc.serve",
        "inbox.send",
        "lease.acquire",
        "presence.write:{sub}",
        "http.read:info",
        "http.read:agents",
        "http.read:state",
        "http.read:history",
        "http.read:a2a",
      ],
      deny: [],
    },
    // Operators: everything, including `http.read:metrics` and `policy.admin`.
    admin: { allow: [">"], deny: [] },
  },
} as const satisfies PolicyInput;
