/**
 * Golden frames: one valid example of every frame type (and of every variant of a frame
 * that has several), as an older client or room sent them. Each must still parse, unchanged,
 * with today's parser, so old clients keep working. A new frame type fails the coverage test
 * until it gets a golden example in test/fixtures/frames.json.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  clientFrameSchema,
  clientFrames,
  parseClientFrame,
  parseRoomFrame,
  roomFrameSchema,
  roomFrames,
} from "../protocol/index.ts";

type Golden = { direction: "client" | "room"; frame: { type: string } & Record<string, unknown> };

const golden: Golden[] = JSON.parse(readFileSync(new URL("./fixtures/frames.json", import.meta.url), "utf8"));

const sides = {
  client: { table: clientFrames as Record<string, z.ZodType>, parse: parseClientFrame, union: clientFrameSchema },
  room: { table: roomFrames as Record<string, z.ZodType>, parse: parseRoomFrame, union: roomFrameSchema },
} as const;

/** The variants of a frame schema: the options of a discriminated union, else the schema itself. */
const variants = (schema: z.ZodType): z.ZodType[] =>
  schema instanceof z.ZodDiscriminatedUnion ? [...(schema.options as z.ZodType[])] : [schema];

it("the fixture is a non-empty list of {direction, frame}", () => {
  expect(golden.length).toBeGreaterThan(0);
  for (const g of golden) {
    expect(["client", "room"]).toContain(g.direction);
    expect(typeof g.frame?.type).toBe("string");
  }
});

describe.each(golden.map((g, i) => [`${i} ${g.direction} ${g.frame.type}`, g] as const))("golden %s", (_, g) => {
  it("parses with the current parser, unchanged", () => {
    const side = sides[g.direction];
    const parsed = side.parse(JSON.stringify(g.frame));
    if (!parsed.ok) throw new Error(`golden ${g.frame.type} frame refused: ${parsed.error.message}`);
    // Unchanged: a field the parser no longer keeps would be silently dropped for old peers.
    expect(parsed.frame).toEqual(g.frame);
    expect(side.union.safeParse(g.frame).success).toBe(true);
  });
});

describe.each(Object.entries(sides))("every %s frame type has a golden example", (direction, side) => {
  const examples = golden.filter((g) => g.direction === direction).map((g) => g.frame);
  it.each(Object.keys(side.table))("%s", (type) => {
    const ofType = examples.filter((f) => f.type === type);
    expect(ofType.length, `add a golden ${direction} "${type}" frame to test/fixtures/frames.json`).toBeGreaterThan(0);
    const schemaVariants = variants(side.table[type] as z.ZodType);
    schemaVariants.forEach((variant, i) => {
      expect(
        ofType.some((f) => variant.safeParse(f).success),
        `add a golden ${direction} "${type}" frame for variant ${i} to test/fixtures/frames.json`,
      ).toBe(true);
    });
  });
});
