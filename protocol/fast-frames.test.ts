/**
 * The hot-frame fast path (`fast-frames.ts`) must never accept what the zod schemas refuse,
 * nor hand back anything but what they would: the parsers' answers with and without it are
 * compared on generated frames, valid and broken, with and without stray keys.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fastClientFrames, fastRoomFrames } from "./fast-frames.ts";
import { clientFrames, parseClientFrame, parseRoomFrame, roomFrames } from "./frames.ts";

const json = fc.oneof(
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 8 },
  fc.constantFrom({ __proto__: { x: 1 } }, { a: [{ __proto__: null }] }, JSON.parse('{"__proto__":{"x":1}}')),
);
/** Mostly good values, then near misses and wrong types for each field. */
const str = (good: string[], bad: string[]) =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...good), weight: 20 },
    fc.constantFrom(...bad),
    fc.string({ maxLength: 300 }),
    json,
  );
const name = str(["callee", "a.b:c@d-1", "_x", "x".repeat(128)], ["x".repeat(129), "-bad", "a b", ""]);
const method = str(["echo", "do.it:now", "_m", "m".repeat(128)], ["1bad", "m".repeat(129), ""]);
const ref = str(["r1", "x".repeat(64)], ["x".repeat(65), ""]);
const target = fc.oneof(
  { arbitrary: name, weight: 6 },
  fc.record({ role: name }),
  fc.record({ role: name, extra: json }),
);
const int = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 3_600_000 }), weight: 20 },
  fc.integer({ min: -5, max: 3_600_005 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constant(2 ** 53),
  json,
);
const traceparent = str(
  ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
  ["00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"],
);
const optional = {
  callId: str(["c1", "x".repeat(128)], ["", "x".repeat(129)]),
  correlationId: str(["k", "", "x".repeat(128)], ["x".repeat(129)]),
  causationId: str(["", "x".repeat(128)], ["x".repeat(129)]),
  traceparent,
  idempotencyKey: str(["key", "x".repeat(200)], ["", "x".repeat(201)]),
};
const stray = fc.dictionary(fc.constantFrom("extra", "__proto__", "constructor", "Type", "ok"), json, { maxKeys: 1 });
const ok = fc.oneof({ arbitrary: fc.constant(true), weight: 8 }, fc.constant(false), json);

function frames(type: string, fields: Record<string, fc.Arbitrary<unknown>>, required: string[]) {
  return fc
    .record(fields, { requiredKeys: required })
    .chain((f) =>
      fc.tuple(fc.constant(f), fc.option(stray, { freq: 8 }), fc.option(fc.constantFrom(...required), { freq: 8 })),
    )
    .map(([f, extra, dropped]) => {
      const frame: Record<string, unknown> = { type, ...f, ...extra };
      if (dropped !== null) delete frame[dropped];
      const text = JSON.stringify(frame);
      // Keys spelled with escapes (`"\u005f_proto__"`) parse to the same keys.
      return text.length % 7 === 0 ? text.replaceAll("_", "\\u005f") : text;
    });
}

const cases = {
  "rpc.call": frames("rpc.call", { ref, to: target, method, input: json, timeoutMs: int, ...optional }, [
    "ref",
    "to",
    "method",
    "input",
    "timeoutMs",
  ]),
  "rpc.result": frames("rpc.result", { id: ref, ok, output: json }, ["id", "ok", "output"]),
  "rpc.request": frames("rpc.request", { id: ref, from: name, method, input: json, deadline: int, ...optional }, [
    "id",
    "from",
    "method",
    "input",
    "deadline",
  ]),
  "rpc.response": frames("rpc.response", { ref, ok, output: json }, ["ref", "ok", "output"]),
} as const;

/** What the zod schema alone answers for `text`. */
function zodAnswer(text: string, schema: { safeParse(v: unknown): { success: boolean; data?: unknown } }) {
  const result = schema.safeParse(JSON.parse(text));
  return result.success ? { ok: true, frame: result.data } : { ok: false };
}

describe("hot frames parse exactly as their schemas say", () => {
  for (const [type, arbitrary] of Object.entries(cases)) {
    const client = type in fastClientFrames;
    const schema = client
      ? clientFrames[type as keyof typeof clientFrames]
      : roomFrames[type as keyof typeof roomFrames];
    const parse = client ? parseClientFrame : parseRoomFrame;
    it(`${type}: the same frames accepted, the same values handed back`, () => {
      let fast = 0;
      fc.assert(
        fc.property(arbitrary, (text) => {
          const check = (client ? fastClientFrames : fastRoomFrames)[type];
          if (check?.(JSON.parse(text))) fast++;
          const parsed = parse(text);
          const expected = zodAnswer(text, schema);
          expect(parsed.ok).toBe(expected.ok);
          if (parsed.ok) expect(parsed.frame).toStrictEqual(expected.frame);
        }),
        { numRuns: 1000 },
      );
      // The generator reaches the fast path, not only the fallback.
      expect(fast).toBeGreaterThan(5);
    });
  }
});
