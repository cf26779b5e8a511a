import { describe, expect, it } from "vitest";
import { uuidv7 } from "./ids.ts";

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const timestampOf = (id: string) => Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16);

describe("uuidv7", () => {
  it("has the RFC 9562 layout: version 7, variant 10, the time in the first 48 bits", () => {
    const before = Date.now();
    const id = uuidv7();
    const after = Date.now();
    expect(id).toMatch(FORMAT);
    // Earlier tests in this process may have pushed the clock a few ms ahead (counter carry).
    expect(timestampOf(id)).toBeGreaterThanOrEqual(before);
    expect(timestampOf(id)).toBeLessThanOrEqual(after + 5);
  });

  it("gives 10,000 unique ids that sort in generation order", () => {
    const ids: string[] = [];
    for (let i = 0; i < 10_000; i++) ids.push(uuidv7());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(FORMAT);
    const sorted = [...ids].sort();
    expect(sorted).toEqual(ids);
  });

  it("stays ordered when more than 4096 ids share one millisecond, or the clock goes back", () => {
    const now = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 10_000; i++) ids.push(uuidv7(now));
    for (let i = 0; i < 100; i++) ids.push(uuidv7(now - 60_000));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(FORMAT);
    expect([...ids].sort()).toEqual(ids);
  });

  // Last: it moves this module's clock into the future.
  it("encodes an explicit time", () => {
    const future = Date.now() + 10 * 365 * 24 * 3600 * 1000;
    const id = uuidv7(future);
    expect(id).toMatch(FORMAT);
    expect(timestampOf(id)).toBe(future);
  });
});
