/** The CLI's argument parsers: what they accept, and a usage error naming the rule otherwise. */
import { describe, expect, it } from "vitest";
import { collectVars, intArg, jsonArg, parseFrom, portArg, projectNameArg } from "./args.ts";

describe("parseFrom", () => {
  it("takes start, end, a seq or an ISO time", () => {
    expect(parseFrom("start")).toBe("start");
    expect(parseFrom("end")).toBe("end");
    expect(parseFrom("42")).toBe(42);
    expect(parseFrom("2025-01-31T12:00:00Z")).toEqual(new Date("2025-01-31T12:00:00Z"));
    expect(parseFrom("2025-01-31T12:00:00.250+02:00")).toEqual(new Date("2025-01-31T10:00:00.250Z"));
    expect(parseFrom("2025-01-31")).toEqual(new Date("2025-01-31T00:00:00Z"));
  });

  it("refuses anything else", () => {
    for (const bad of ["0", "-1", "1.5", "yesterday", "", "2025-13-45", "9999999999999999999"]) {
      expect(() => parseFrom(bad), bad).toThrow(/expected/);
    }
  });
});

describe("argument parsers", () => {
  it("jsonArg parses any JSON value and names the problem otherwise", () => {
    expect(jsonArg('{"a":[1,null]}')).toEqual({ a: [1, null] });
    expect(jsonArg('"s"')).toBe("s");
    expect(jsonArg("null")).toBeNull();
    expect(() => jsonArg("{a:1}")).toThrow(/not valid JSON/);
  });

  it("intArg enforces integers and a lower bound", () => {
    expect(intArg(1)("5")).toBe(5);
    expect(intArg(0)("0")).toBe(0);
    for (const bad of ["0", "1e3", "2.5", "x", "", "-3"]) expect(() => intArg(1)(bad), bad).toThrow(/integer >= 1/);
  });
});

describe("room command parsers", () => {
  it("portArg takes 1 to 65535", () => {
    expect(portArg("1999")).toBe(1999);
    expect(portArg("65535")).toBe(65_535);
    for (const bad of ["0", "65536", "http", "19.99", ""]) expect(() => portArg(bad), bad).toThrow(/expected/);
  });

  it("collectVars gathers KEY=VALUE pairs, the value being everything after the first =", () => {
    const vars = collectVars("B=x=y", collectVars("CROSSTALK_LOG_WINDOW=50000", {}));
    expect(vars).toEqual({ CROSSTALK_LOG_WINDOW: "50000", B: "x=y" });
    expect(collectVars("EMPTY=", {})).toEqual({ EMPTY: "" });
    for (const bad of ["NOVALUE", "=1", "1A=2", "A-B=1", "A B=1", ""])
      expect(() => collectVars(bad, {}), bad).toThrow(/KEY=VALUE/);
  });

  it("projectNameArg takes what PartyKit accepts in a URL", () => {
    expect(projectNameArg("my-team-room")).toBe("my-team-room");
    for (const bad of ["my_team", "@scope/x", "a.b", "", "x".repeat(64)])
      expect(() => projectNameArg(bad), bad).toThrow(/letters, digits and dashes/);
  });
});
