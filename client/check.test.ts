import { describe, expect, it } from "vitest";
import { z } from "zod";
import { nameSchema } from "../protocol/index.ts";
import { check } from "./check.ts";

describe("check", () => {
  it("returns the parsed value", () => {
    expect(check(z.object({ n: z.number().default(1) }), {}, "thing")).toEqual({ n: 1 });
  });

  it("throws INVALID_ARGUMENT naming the argument, with the zod issues in details", () => {
    expect(() => check(nameSchema, "bad name!", "stream name")).toThrow(
      expect.objectContaining({
        code: "INVALID_ARGUMENT",
        message: expect.stringMatching(/^invalid stream name "bad name!": /),
        details: [expect.objectContaining({ code: "invalid_format" })],
      }),
    );
  });

  it("throws the code it is given", () => {
    expect(() => check(z.number(), "x", "input", "INVALID_INPUT")).toThrow(
      expect.objectContaining({ code: "INVALID_INPUT" }),
    );
  });
});
