/**
 * The pure parts of the wire protocol: text frame parsing, subject patterns, binary doc
 * frames, chunking and document names. No sockets here; the end-to-end behaviour is in
 * test/hostile-input.test.ts.
 */
import fc from "fast-check";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import { describe, expect, it } from "vitest";
import {
  BINARY_KIND_CHUNK,
  chunkBinary,
  createReassembler,
  decodeDocFrame,
  docNameSchema,
  encodeDocFrame,
  MAX_FRAME_BYTES,
  matchesPattern,
  type Parsed,
  parseClientFrame,
  parseRoomFrame,
} from "./index.ts";

const parsers: Record<string, (text: string) => Parsed<unknown>> = { client: parseClientFrame, room: parseRoomFrame };

function expectError<T>(parsed: Parsed<T>, code: string, ref?: string) {
  expect(parsed.ok).toBe(false);
  if (parsed.ok) return;
  expect(parsed.error.code).toBe(code);
  expect(typeof parsed.error.message).toBe("string");
  expect(parsed.ref).toBe(ref);
}

describe.each(Object.entries(parsers))("parse %s frames", (_side, parse) => {
  it("refuses non-JSON as BAD_FRAME without a ref", () => {
    for (const text of ["", "{", "not json", '{"type":"ok","ref":"r1"', "\u0000", "undefined"]) {
      expectError(parse(text), "BAD_FRAME");
    }
  });

  it("refuses a missing or unknown type as UNKNOWN_FRAME, echoing a string ref", () => {
    expectError(parse("{}"), "UNKNOWN_FRAME");
    expectError(parse("null"), "UNKNOWN_FRAME");
    expectError(parse("42"), "UNKNOWN_FRAME");
    expectError(parse('"publish"'), "UNKNOWN_FRAME");
    expectError(parse('[{"type":"ok"}]'), "UNKNOWN_FRAME");
    expectError(parse('{"type":7,"ref":"r7"}'), "UNKNOWN_FRAME", "r7");
    expectError(parse('{"type":"no.such.frame","ref":"r1"}'), "UNKNOWN_FRAME", "r1");
    expectError(parse('{"ref":"r2"}'), "UNKNOWN_FRAME", "r2");
    // Inherited properties are not frame types.
    for (const type of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
      expectError(parse(JSON.stringify({ type, ref: "r3" })), "UNKNOWN_FRAME", "r3");
    }
    // A ref that could not be one (not a string, too long) is not echoed.
    expectError(parse('{"type":"nope","ref":5}'), "UNKNOWN_FRAME");
    expectError(parse(JSON.stringify({ type: "nope", ref: "x".repeat(65) })), "UNKNOWN_FRAME");
  });

  it("never throws on arbitrary text or arbitrary JSON", () => {
    const check = (text: string) => {
      const parsed = parse(text);
      if (!parsed.ok) expect(["BAD_FRAME", "UNKNOWN_FRAME"]).toContain(parsed.error.code);
    };
    fc.assert(fc.property(fc.string(), check), { numRuns: 500 });
    fc.assert(
      fc.property(fc.jsonValue(), (v) => check(JSON.stringify(v))),
      { numRuns: 500 },
    );
    // Objects that carry a real frame type but random fields.
    const types = fc.constantFrom("publish", "history", "rpc.call", "rpc.result", "welcome", "error", "rpc.response");
    fc.assert(
      fc.property(types, fc.dictionary(fc.string(), fc.jsonValue()), (type, rest) =>
        check(JSON.stringify({ ...rest, type })),
      ),
      { numRuns: 500 },
    );
  });
});

describe("parseClientFrame", () => {
  it("accepts a valid frame and returns it typed", () => {
    const frame = { type: "publish", ref: "p1", stream: "main", events: [{ id: "e1", type: "deal.created", data: 1 }] };
    const parsed = parseClientFrame(JSON.stringify(frame));
    expect(parsed).toEqual({ ok: true, frame });
  });

  it("refuses schema failures as BAD_FRAME with the ref and zod issues as details", () => {
    const parsed = parseClientFrame(JSON.stringify({ type: "publish", ref: "p2", stream: "main", events: [] }));
    expectError(parsed, "BAD_FRAME", "p2");
    if (parsed.ok) return;
    expect(parsed.error.message).toContain("publish");
    expect(Array.isArray(parsed.error.details)).toBe(true);
    // A bad stream name, an event type with a wildcard, a missing ref.
    expectError(
      parseClientFrame(JSON.stringify({ type: "publish", ref: "p3", stream: "../x", events: [] })),
      "BAD_FRAME",
      "p3",
    );
    expectError(
      parseClientFrame(
        JSON.stringify({ type: "publish", ref: "p4", stream: "main", events: [{ id: "e", type: "deal.*", data: 1 }] }),
      ),
      "BAD_FRAME",
      "p4",
    );
    expectError(parseClientFrame(JSON.stringify({ type: "history", stream: "main", from: 1, limit: 1 })), "BAD_FRAME");
  });

  it("does not accept room frames", () => {
    expectError(parseClientFrame(JSON.stringify({ type: "ok", ref: "r" })), "UNKNOWN_FRAME", "r");
    expectError(parseClientFrame(JSON.stringify({ type: "welcome" })), "UNKNOWN_FRAME");
  });

  // Regression: zod's z.json() recurses once per nesting level, so a deeply nested value
  // (a ~200 KB frame, well under MAX_FRAME_BYTES) overflowed the stack; parseFrame now refuses
  // anything deeper than MAX_JSON_DEPTH before validating.
  it("never throws on deeply nested JSON", () => {
    const depth = 100_000;
    const text = `{"type":"rpc.call","ref":"deep","to":"a","method":"m","input":${"[".repeat(depth)}${"]".repeat(depth)},"timeoutMs":1}`;
    expect(text.length).toBeLessThan(MAX_FRAME_BYTES);
    expectError(parseClientFrame(text), "BAD_FRAME", "deep");
  });
});

describe("parseRoomFrame", () => {
  it("accepts a valid frame", () => {
    expect(parseRoomFrame(JSON.stringify({ type: "ok", ref: "r" }))).toEqual({
      ok: true,
      frame: { type: "ok", ref: "r" },
    });
  });

  it("refuses schema failures as BAD_FRAME with the ref", () => {
    // The ref is echoed as sent, even when it is not a valid one.
    expectError(parseRoomFrame(JSON.stringify({ type: "ok", ref: "" })), "BAD_FRAME", "");
    expectError(parseRoomFrame(JSON.stringify({ type: "rpc.response", ref: "c1", ok: true })), "BAD_FRAME", "c1");
    expectError(
      parseRoomFrame(JSON.stringify({ type: "error", ref: "e1", error: { code: "NOPE", message: "x" } })),
      "BAD_FRAME",
      "e1",
    );
  });

  it("does not accept client frames", () => {
    expectError(parseRoomFrame(JSON.stringify({ type: "publish", ref: "r" })), "UNKNOWN_FRAME", "r");
  });
});

describe("matchesPattern", () => {
  const cases: [pattern: string, type: string, expected: boolean][] = [
    ["deal.closed", "deal.closed", true],
    ["deal.closed", "deal.created", false],
    ["deal.closed", "deal", false],
    ["deal", "deal.closed", false],
    ["deal.*", "deal.closed", true],
    ["deal.*", "deal", false],
    ["deal.*", "deal.closed.won", false],
    ["deal.*", "lead.closed", false],
    ["*.closed", "deal.closed", true],
    ["*.closed", "closed", false],
    ["*", "deal", true],
    ["*", "deal.closed", false],
    ["deal.*.won", "deal.closed.won", true],
    ["deal.*.won", "deal.closed.lost", false],
    ["deal.>", "deal.closed", true],
    ["deal.>", "deal.closed.won", true],
    ["deal.>", "deal", false],
    ["deal.>", "deals.closed", false],
    ["deal.*.>", "deal.closed", false],
    ["deal.*.>", "deal.closed.won", true],
    [">", "deal", true],
    [">", "deal.closed.won", true],
    ["deal", "dealer", false],
    ["deal", "deal", true],
  ];
  it.each(cases)("%s vs %s -> %s", (pattern, type, expected) => {
    expect(matchesPattern(pattern, type)).toBe(expected);
  });
});

describe("doc frames", () => {
  const payload = Uint8Array.from([1, 2, 3, 250, 0, 7]);
  const write = (e: encoding.Encoder) => {
    encoding.writeVarUint(e, 2); // y-protocols messageYjsUpdate
    encoding.writeVarUint8Array(e, payload);
  };

  it("round trips the document name and leaves the decoder at the sync message", () => {
    for (const doc of ["state/x", "log/main", "log/main.dlq", "state/a:b@c-d_e"] as const) {
      const decoded = decodeDocFrame(encodeDocFrame(doc as "state/x", write));
      expect(decoded.ok).toBe(true);
      if (!decoded.ok) return;
      expect(decoded.frame.doc).toBe(doc);
      expect(decoding.readVarUint(decoded.frame.decoder)).toBe(2);
      expect(decoding.readVarUint8Array(decoded.frame.decoder)).toEqual(payload);
      expect(decoding.hasContent(decoded.frame.decoder)).toBe(false);
    }
  });

  const raw = (build: (e: encoding.Encoder) => void) => {
    const e = encoding.createEncoder();
    build(e);
    return encoding.toUint8Array(e);
  };

  it("refuses bad document names", () => {
    for (const doc of ["other/x", "state/", "state/../x", "log", "", "state/x/y", "/state/x"]) {
      const bytes = raw((e) => {
        encoding.writeVarUint(e, 0);
        encoding.writeVarString(e, doc);
        encoding.writeVarUint(e, 0);
        write(e);
      });
      const decoded = decodeDocFrame(bytes);
      expect(decoded.ok, doc).toBe(false);
      if (!decoded.ok) expect(decoded.error.code).toBe("BAD_FRAME");
    }
  });

  it("refuses truncated frames, unknown kinds and unknown y message types", () => {
    const whole = encodeDocFrame("state/x", write);
    // Cutting inside the header (kind, name or y message type) must fail; the body is the caller's.
    const headerLength = 1 + 1 + "state/x".length + 1;
    for (let n = 0; n < headerLength; n++) {
      const decoded = decodeDocFrame(whole.slice(0, n));
      expect(decoded.ok, `cut at ${n}`).toBe(false);
      if (!decoded.ok) expect(decoded.error.code).toBe("BAD_FRAME");
    }
    // A name whose declared length runs past the end.
    const long = raw((e) => {
      encoding.writeVarUint(e, 0);
      encoding.writeVarUint(e, 1000);
      encoding.writeUint8Array(e, new TextEncoder().encode("state/x"));
    });
    expect(decodeDocFrame(long)).toMatchObject({ ok: false, error: { code: "BAD_FRAME" } });

    const kind = raw((e) => {
      encoding.writeVarUint(e, 9);
      encoding.writeVarString(e, "state/x");
    });
    expect(decodeDocFrame(kind)).toMatchObject({ ok: false, error: { code: "UNKNOWN_FRAME" } });
    const awareness = raw((e) => {
      encoding.writeVarUint(e, 0);
      encoding.writeVarString(e, "state/x");
      encoding.writeVarUint(e, 1);
    });
    expect(decodeDocFrame(awareness)).toMatchObject({ ok: false, error: { code: "UNKNOWN_FRAME" } });
  });

  it("never throws on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const decoded = decodeDocFrame(bytes);
        if (!decoded.ok) expect(["BAD_FRAME", "UNKNOWN_FRAME"]).toContain(decoded.error.code);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("chunking", () => {
  const big = () => {
    const bytes = new Uint8Array(2_500_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + (i >> 13)) & 0xff;
    return bytes;
  };

  it("splits a 2.5 MB frame into frames under the limit and joins them back", () => {
    const bytes = big();
    const chunks = chunkBinary(bytes);
    expect(chunks.length).toBe(3);
    for (const chunk of chunks) {
      expect(chunk.byteLength).toBeLessThanOrEqual(MAX_FRAME_BYTES);
      expect(decoding.readVarUint(decoding.createDecoder(chunk))).toBe(BINARY_KIND_CHUNK);
    }
    const reassembler = createReassembler();
    const results = chunks.map((c) => reassembler.push(c));
    expect(results.slice(0, -1)).toEqual([
      { ok: true, frame: null },
      { ok: true, frame: null },
    ]);
    const last = results.at(-1);
    expect(last?.ok).toBe(true);
    if (!last?.ok || !last.frame) throw new Error("no frame reassembled");
    expect(last.frame.byteLength).toBe(bytes.byteLength);
    expect(Buffer.compare(last.frame, bytes)).toBe(0);

    // The reassembler is reusable: a second chunked frame (a new id) goes through too.
    const again = chunkBinary(bytes.subarray(0, 1_500_000));
    expect(again.length).toBe(2);
    expect(reassembler.push(again[0] as Uint8Array)).toEqual({ ok: true, frame: null });
    const second = reassembler.push(again[1] as Uint8Array);
    expect(second.ok && second.frame && Buffer.compare(second.frame, bytes.subarray(0, 1_500_000))).toBe(0);
  });

  it("passes non-chunk frames through unchanged, also between chunks of another frame", () => {
    const reassembler = createReassembler();
    const doc = encodeDocFrame("state/x", (e) => encoding.writeVarUint(e, 0));
    expect(reassembler.push(doc)).toEqual({ ok: true, frame: doc });
    const chunks = chunkBinary(big());
    expect(reassembler.push(chunks[0] as Uint8Array)).toEqual({ ok: true, frame: null });
    expect(reassembler.push(doc)).toEqual({ ok: true, frame: doc });
    expect(reassembler.push(chunks[1] as Uint8Array)).toEqual({ ok: true, frame: null });
    const last = reassembler.push(chunks[2] as Uint8Array);
    expect(last.ok && last.frame?.byteLength).toBe(2_500_000);
  });

  it("refuses chunks out of order, then recovers on a fresh frame", () => {
    const bytes = big();
    const chunks = chunkBinary(bytes);
    const reassembler = createReassembler();
    // A middle chunk first.
    expect(reassembler.push(chunks[1] as Uint8Array)).toMatchObject({ ok: false, error: { code: "BAD_FRAME" } });
    // A skipped chunk.
    expect(reassembler.push(chunks[0] as Uint8Array)).toEqual({ ok: true, frame: null });
    expect(reassembler.push(chunks[2] as Uint8Array)).toMatchObject({ ok: false, error: { code: "BAD_FRAME" } });
    // Slices of two different frames interleaved.
    const other = chunkBinary(bytes);
    expect(reassembler.push(chunks[0] as Uint8Array)).toEqual({ ok: true, frame: null });
    expect(reassembler.push(other[1] as Uint8Array)).toMatchObject({ ok: false, error: { code: "BAD_FRAME" } });
    // A truncated chunk frame.
    expect(reassembler.push((chunks[0] as Uint8Array).slice(0, 10))).toMatchObject({
      ok: false,
      error: { code: "BAD_FRAME" },
    });
    // After errors, a complete frame in order still goes through.
    for (const c of chunks.slice(0, -1)) expect(reassembler.push(c)).toEqual({ ok: true, frame: null });
    const last = reassembler.push(chunks.at(-1) as Uint8Array);
    expect(last.ok && last.frame && Buffer.compare(last.frame, bytes)).toBe(0);
  });
});

describe("docNameSchema", () => {
  it.each(["state/x", "log/main", "log/main.dlq", "state/_x", "state/a:b@c-d.e", `state/${"a".repeat(128)}`])(
    "accepts %s",
    (name) => {
      expect(docNameSchema.safeParse(name)).toEqual({ success: true, data: name });
    },
  );
  it.each([
    "other/x",
    "state/",
    "log/",
    "state/../x",
    "state/.x",
    "state/x/y",
    "state",
    "",
    " state/x",
    "state/x ",
    "STATE/x",
    `state/${"a".repeat(129)}`,
    "state/x\n",
  ])("rejects %j", (name) => {
    expect(docNameSchema.safeParse(name).success).toBe(false);
  });
  it("rejects non-strings", () => {
    for (const v of [null, 1, {}, ["state/x"]]) expect(docNameSchema.safeParse(v).success).toBe(false);
  });
});
