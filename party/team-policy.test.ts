/** The team's stored policy, without a room: loading it (see test/policy.test.ts for the rest). */
import { describe, expect, it } from "vitest";
import { MemoryKv } from "./memory-storage.ts";
import { TeamPolicy } from "./team-policy.ts";

describe("loading the stored policy", () => {
  it("reads again after a failed read instead of failing for good", async () => {
    const storage = new MemoryKv();
    await storage.put({ policy: { policy: { roles: { ops: { allow: ["policy.admin"] } } }, rev: 3 } });
    const get = storage.get.bind(storage);
    let failures = 1;
    storage.get = async (key) => {
      if (failures-- > 0) throw new Error("storage hiccup");
      return get(key);
    };
    const policy = new TeamPolicy({ team: "acme", storage, now: Date.now, changed: () => {} });
    await expect(policy.load()).rejects.toThrow("storage hiccup");
    expect(policy.ready()).not.toBeNull();
    await policy.load();
    expect(policy.ready()).toBeNull();
    expect(policy.current().rev).toBe(3);
  });
});
