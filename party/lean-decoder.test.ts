import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import { describe, expect, it } from "vitest";
import * as Y from "yjs";
import { applyStoredUpdate, readAny } from "./lean-decoder.ts";

const ascii = (n: number) => "abcdefghij".repeat(7).slice(0, n);

/** Every kind of value lib0's `writeAny` writes, at the edges of the fast paths. */
const VALUES: unknown[] = [
  undefined,
  null,
  true,
  false,
  0,
  -1,
  2 ** 31 - 1,
  -(2 ** 31),
  2 ** 40,
  1234.5,
  0.1,
  -0.1,
  Number.MAX_VALUE,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  1_700_000_000_123,
  123n,
  "",
  "a",
  ascii(63),
  ascii(64),
  ascii(65),
  `${ascii(63)}é`,
  "héllo",
  "日本語",
  "emoji 🙂",
  "\u0000\u007f",
  new Uint8Array([1, 2, 3]),
  [],
  [1, "two", [3, { four: 4 }]],
  {},
  { id: "evt-1", type: "deal.won", data: { n: 1, note: "benchmark event", amount: 1234.5 }, ts: 1_700_000_000_123 },
  { "": 1, ключ: "значение", [ascii(64)]: ascii(65) },
];

function roundTrip(value: unknown): { lib0: unknown; lean: unknown } {
  const bytes = encoding.encode((e) => encoding.writeAny(e, value as never));
  const a = decoding.createDecoder(bytes);
  const b = decoding.createDecoder(bytes);
  const lib0 = decoding.readAny(a);
  const lean = readAny(b);
  expect(b.pos).toBe(a.pos);
  return { lib0, lean };
}

describe("the lean decoder", () => {
  it("reads every value exactly as lib0 does, and stops at the same byte", () => {
    for (const value of VALUES) {
      const { lib0, lean } = roundTrip(value);
      expect(lean).toStrictEqual(lib0);
    }
    // One sequence of all of them: positions carry over from value to value.
    const bytes = encoding.encode((e) => {
      for (const value of VALUES) encoding.writeAny(e, value as never);
    });
    const a = decoding.createDecoder(bytes);
    const b = decoding.createDecoder(bytes);
    for (const _ of VALUES) expect(readAny(b)).toStrictEqual(decoding.readAny(a));
    expect(b.pos).toBe(bytes.length);
  });

  it("refuses what lib0 refuses: a cut-short string, float or an unknown tag", () => {
    for (const value of ["hello", ascii(64), 0.1, 1234.5, { key: "value" }]) {
      const bytes = encoding.encode((e) => encoding.writeAny(e, value as never));
      const cut = bytes.subarray(0, bytes.length - 1);
      expect(() => decoding.readAny(decoding.createDecoder(cut))).toThrow();
      expect(() => readAny(decoding.createDecoder(cut))).toThrow();
    }
    expect(() => readAny(decoding.createDecoder(new Uint8Array([3])))).toThrow();
  });

  it("loads a document to the same state as Y.applyUpdate", () => {
    const doc = new Y.Doc();
    const segments = doc.getMap<Y.Array<unknown>>("segments");
    const segment = new Y.Array<unknown>();
    segments.set("0", segment);
    // Yjs takes no bigint or undefined as an array item; nested, they are ContentAny values like the rest.
    segment.push([...VALUES.filter((v) => v !== undefined && typeof v !== "bigint"), VALUES]);
    doc.getMap("m").set("text", "plain");
    segments.delete("0");
    segments.set("1", new Y.Array());
    (segments.get("1") as Y.Array<unknown>).push([["evt-2", "t", { n: 2 }, 1_700_000_000_456, "agent", "main"]]);
    const update = Y.encodeStateAsUpdate(doc);

    const plain = new Y.Doc();
    Y.applyUpdate(plain, update);
    const lean = new Y.Doc();
    applyStoredUpdate(lean, update, "loading");
    expect(lean.getMap("segments").toJSON()).toStrictEqual(plain.getMap("segments").toJSON());
    expect(lean.getMap("m").toJSON()).toStrictEqual(plain.getMap("m").toJSON());
    expect(Buffer.compare(Y.encodeStateAsUpdate(lean), Y.encodeStateAsUpdate(plain))).toBe(0);
  });
});
