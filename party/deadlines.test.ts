/**
 * One host timer for many deadlines (`deadlines.ts`): each fires once, after its delay, in
 * order of due time (ties in the order added); a deleted one never fires.
 */
import { expect, it, vi } from "vitest";
import { eventually } from "../testing/index.ts";
import { Deadlines, MAX_ARMED_MS } from "./deadlines.ts";

it("fires each live deadline once, no earlier than its delay, in due order; deleted ones never", async () => {
  const fired: { key: number; ms: number; late: number }[] = [];
  const added = new Map<number, number>();
  const deadlines = new Deadlines<number>((key, ms) => {
    fired.push({ key, ms, late: Date.now() - ((added.get(key) as number) + ms) });
  });
  const plan: [number, number][] = [];
  for (let key = 0; key < 300; key++) plan.push([key, [40, 10, 25, 10, 0][key % 5] as number]);
  for (const [key, ms] of plan) {
    added.set(key, Date.now());
    deadlines.add(key, ms);
  }
  const deleted = new Set(plan.filter(([key]) => key % 3 === 0).map(([key]) => key));
  for (const key of deleted) deadlines.delete(key);
  // Re-adding replaces the earlier deadline.
  added.set(1, Date.now());
  deadlines.add(1, 5);
  const live = plan.filter(([key]) => !deleted.has(key));
  await eventually(() => expect(fired).toHaveLength(live.length));
  expect(new Set(fired.map((f) => f.key))).toEqual(new Set(live.map(([key]) => key)));
  for (const f of fired) expect(f.late).toBeGreaterThanOrEqual(0);
  const due = (key: number) => (added.get(key) as number) + (key === 1 ? 5 : (plan[key]?.[1] as number));
  for (let i = 1; i < fired.length; i++) {
    const [a, b] = [fired[i - 1], fired[i]] as [(typeof fired)[0], (typeof fired)[0]];
    // Within the millisecond the clock may tick between noting `added` and `add` reading it.
    expect(due(a.key) <= due(b.key) + 1).toBe(true);
  }
  expect(deadlines.size).toBe(0);
});

it("a deadline added while others fire is armed too", async () => {
  const fired: string[] = [];
  const deadlines = new Deadlines<string>((key) => {
    fired.push(key);
    if (key === "first") deadlines.add("added-late", 30);
  });
  deadlines.add("first", 5);
  // Far enough out that a loaded machine's late timers cannot reorder it.
  deadlines.add("second", 3000);
  await eventually(() => expect(fired).toEqual(["first", "added-late"]));
  await eventually(() => expect(fired).toEqual(["first", "added-late", "second"]));
});

it("deadlines added and deleted one at a time (sequential calls) arm the host timer once, which then lapses", async () => {
  const armed = vi.spyOn(globalThis, "setTimeout");
  const cleared = vi.spyOn(globalThis, "clearTimeout");
  const fired: number[] = [];
  const deadlines = new Deadlines<number>((key) => fired.push(key));
  let timer: { _destroyed?: boolean } | undefined;
  try {
    for (let key = 0; key < 100; key++) {
      deadlines.add(key, 30_000);
      deadlines.delete(key);
    }
    expect(armed).toHaveBeenCalledTimes(1);
    expect(armed.mock.calls[0]?.[1]).toBeLessThanOrEqual(MAX_ARMED_MS);
    expect(cleared).not.toHaveBeenCalled();
    timer = armed.mock.results[0]?.value;
  } finally {
    armed.mockRestore();
    cleared.mockRestore();
  }
  // The one timer finds nothing due and arms no other: an idle room holds no timer.
  await eventually(() => expect(timer?._destroyed).toBe(true), { timeoutMs: 10_000 });
  expect(fired).toEqual([]);
  expect(deadlines.size).toBe(0);
});
