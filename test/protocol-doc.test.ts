/**
 * docs/PROTOCOL.md is generated from protocol/; this fails when someone changes a
 * frame, an error code or a close code without regenerating it.
 */
import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { clientFrames, ERROR_CODES, roomFrames } from "../protocol/index.ts";
import { frameComments, PROTOCOL_DOC, render } from "../scripts/protocol-doc.ts";

it("docs/PROTOCOL.md is what scripts/protocol-doc.ts generates", () => {
  const current = readFileSync(PROTOCOL_DOC, "utf8");
  // On failure: node --import tsx scripts/protocol-doc.ts
  expect(current === render(), "docs/PROTOCOL.md is stale: run `node --import tsx scripts/protocol-doc.ts`").toBe(true);
});

it("documents every frame and error code", () => {
  const text = render();
  for (const type of [...Object.keys(clientFrames), ...Object.keys(roomFrames)]) {
    expect(text).toContain(`### \`${type}\``);
  }
  for (const code of Object.keys(ERROR_CODES)) expect(text).toContain(`| \`${code}\` `);
});

it("picks up the doc comment above a frame, and only top-level ones", () => {
  const source = [
    "export const clientFrames = {",
    "  /** Does a. */",
    "  a: z.object({",
    "    /** A field, not a frame. */",
    "    x: z.string(),",
    "  }),",
    "  /**",
    "   * Does b, see {@link a}.",
    "   */",
    '  "b.c": z.object({}),',
    "  d: z.object({}),",
    "} as const;",
    "export const roomFrames = {",
    "  /** Elsewhere. */",
    "  e: z.object({}),",
    "} as const;",
  ].join("\n");
  expect(Object.fromEntries(frameComments(source, "clientFrames"))).toEqual({
    a: "Does a.",
    "b.c": "Does b, see `a`.",
  });
});
