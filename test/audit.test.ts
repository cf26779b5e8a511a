/**
 * The audit stream (`party/audit.ts`) in a real `partykit dev` room: no agent can write it,
 * admins included; refused connections and frames, policy changes and token takeovers land
 * in it as room-written events; a flood of refused frames is aggregated into a few events.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { StoredEvent, Team } from "../client/index.ts";
import { defaultPolicy } from "../party/default-policy.ts";
import { AUDIT_STREAM, CLOSE_CODES, PROTOCOL_VERSION } from "../protocol/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";
import { rawSocket } from "./raw-socket.ts";

let room: RoomServer;
beforeAll(async () => {
  // A large error budget: the flood below is refused frame by frame, not cut short by a close.
  room = await startRoom({ vars: { CROSSTALK_ERROR_BUDGET: "100000" } });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

async function auditOf(team: Team): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for await (const e of team.history({ stream: AUDIT_STREAM })) out.push(e);
  return out;
}

it("refuses every publish to the audit stream, an admin's too", async () => {
  const team = room.team("audit-write");
  const ops = await room.agent("ops", { team, role: "admin" });
  const agent = await room.agent("worker", { team });
  for (const who of [ops, agent]) {
    await expect(who.publish("audit.policy.changed", { forged: true }, { stream: AUDIT_STREAM })).rejects.toMatchObject(
      {
        code: "FORBIDDEN",
        message: expect.stringMatching(/only the room appends/),
      },
    );
  }
  // The refusals themselves are audited, by the room; nothing the agents sent is in there.
  const audit = await eventually(async () => {
    const events = await auditOf(ops);
    expect(events.filter((e) => e.type === "audit.frame.refused").map((e) => e.data)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ agent: "ops", code: "FORBIDDEN", count: 1 }),
        expect.objectContaining({ agent: "worker", code: "FORBIDDEN", count: 1 }),
      ]),
    );
    return events;
  });
  expect(audit.every((e) => e.source === "room" && e.type.startsWith("audit."))).toBe(true);
  expect(audit.some((e) => (e.data as { forged?: boolean }).forged)).toBe(false);
});

it("records refused connections, policy changes and token takeovers", async () => {
  const team = room.team("audit-acts");
  const ops = await room.agent("ops", { team, role: "admin" });
  await ops.setPolicy(defaultPolicy);
  // A token for `mallory` used to connect as `alice`: refused at admission.
  const token = await room.token("mallory", "agent", { team });
  const refused = await rawSocket(
    room,
    `ws://${room.host}/parties/main/${team}?agent=alice&v=${PROTOCOL_VERSION}&token=${token}`,
  );
  expect((await refused.closed).code).toBe(CLOSE_CODES.Forbidden.code);
  const forged = await rawSocket(
    room,
    `ws://${room.host}/parties/main/${team}?agent=eve&v=${PROTOCOL_VERSION}&token=not-a-token`,
  );
  expect((await forged.closed).code).toBe(CLOSE_CODES.Unauthorized.code);
  expect((await fetch(`http://${room.host}/parties/main/${team}/metrics`)).status).toBe(401);
  // The same agent connecting again from another client instance takes the id over.
  await room.agent("sales-1", { team });
  await room.agent("sales-1", { team });

  await eventually(async () => {
    const events = await auditOf(ops);
    const of = (type: string) => events.filter((e) => e.type === type).map((e) => e.data);
    expect(of("audit.connection.refused")).toEqual(
      expect.arrayContaining([
        // A good token for another agent than the URL's: refused at the edge, by its verified agent.
        expect.objectContaining({ agent: "mallory", claimed: "alice", code: CLOSE_CODES.Forbidden.code, count: 1 }),
        // Refused at the edge, before the room: the agent is only what the URL claimed.
        expect.objectContaining({ agent: null, claimed: "eve", code: CLOSE_CODES.Unauthorized.code, at: "edge" }),
        expect.objectContaining({ agent: null, claimed: null, code: 401, at: "edge" }),
      ]),
    );
    expect(of("audit.policy.changed")).toEqual([expect.objectContaining({ agent: "ops", rev: 1 })]);
    expect(of("audit.token.takeover")).toEqual([expect.objectContaining({ agent: "sales-1", count: 1 })]);
  });
});

it("aggregates a flood of refused frames into a few events", async () => {
  const team = room.team("audit-flood");
  const ops = await room.agent("ops", { team, role: "admin" });
  const token = await room.token("flooder", "agent", { team });
  const raw = await rawSocket(
    room,
    `ws://${room.host}/parties/main/${team}?agent=flooder&v=${PROTOCOL_VERSION}&token=${token}`,
  );
  const N = 3000;
  for (let i = 0; i < N; i++) {
    raw.send(
      JSON.stringify({
        type: "publish",
        ref: `r${i}`,
        stream: AUDIT_STREAM,
        events: [{ id: `x${i}`, type: "x", data: i }],
      }),
    );
  }
  await eventually(() => expect(raw.frames.filter((f) => f.type === "error")).toHaveLength(N), { timeoutMs: 60_000 });
  raw.close();
  const floods = await eventually(async () => {
    const events = (await auditOf(ops)).filter(
      (e) => e.type === "audit.frame.refused" && (e.data as { agent: string }).agent === "flooder",
    );
    // Every refusal is counted…
    expect(events.reduce((n, e) => n + (e.data as { count: number }).count, 0)).toBe(N);
    return events;
  });
  // …in one event per aggregation window (1 s), not one per frame.
  expect(floods.length).toBeLessThan(N / 20);
  expect(floods[0]?.data).toMatchObject({ code: "FORBIDDEN", firstAt: expect.any(Number), lastAt: expect.any(Number) });
});

it("reports a flood of refusals at the edge a few a second, counting the rest", async () => {
  const team = room.team("audit-edge-flood");
  const ops = await room.agent("ops", { team, role: "admin" });
  const url = `http://${room.host}/parties/main/${team}/metrics`;
  const flood = await Promise.all(Array.from({ length: 60 }, () => fetch(url)));
  expect(flood.every((r) => r.status === 401)).toBe(true);
  // The next window's first refusal carries the count of those only counted.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  expect((await fetch(url)).status).toBe(401);
  await eventually(async () => {
    const refused = (await auditOf(ops))
      .filter((e) => e.type === "audit.connection.refused")
      .map((e) => e.data as { code: number; count: number; unreported?: number });
    const reports = refused.filter((d) => d.code === 401);
    // Every refusal accounted for, but far fewer reached the room than were refused.
    expect(reports.reduce((n, d) => n + d.count + (d.unreported ?? 0), 0)).toBe(61);
    expect(reports.reduce((n, d) => n + d.count, 0)).toBeLessThan(61);
  });
});
