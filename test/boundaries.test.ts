/**
 * The room and the client share only what is in `protocol/`: `party/` never imports
 * `client/`, `client/` never imports `party/`, and `protocol/` imports neither. A helper
 * both sides need moves into `protocol/` (and must stay isomorphic there) instead of one side
 * reaching into the other — that is how the room's log writer once shipped to browsers.
 * Tests may cross the line; shipped files may not.
 */
import { expect, it } from "vitest";
import { importsOf, sourcesOf } from "./sources.ts";

const FORBIDDEN: Record<string, RegExp> = {
  party: /(^|\/)client\//,
  client: /(^|\/)party\//,
  protocol: /(^|\/)(client|party)\//,
};

it.each(Object.entries(FORBIDDEN))("non-test files in %s/ import only what they may", (folder, forbidden) => {
  const offenders: string[] = [];
  for (const file of sourcesOf(folder)) {
    for (const spec of importsOf(file)) {
      if (spec.startsWith(".") && forbidden.test(spec)) offenders.push(`${file}: ${spec}`);
    }
  }
  expect(offenders).toEqual([]);
});

it("sees the imports it checks (a regex that matched nothing would pass vacuously)", () => {
  expect(sourcesOf("party").length).toBeGreaterThan(5);
  expect(importsOf("party/room.ts")).toContain("../protocol/index.ts");
});
