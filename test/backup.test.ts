/**
 * Backup and restore of a team (`party/backup.ts`, `cli/backup.ts`) in a real `partykit dev`
 * room: a team with an archive, compaction holes, removed segments, state namespaces, a
 * durable consumer, a consumer group, a custom policy and audit events is exported with
 * `crosstalk export`, imported with `crosstalk import` into a new room — first by a real
 * process killed half-way, then rerun — and the restored room answers every read exactly like
 * the original: the two exports and every stream's history are byte for byte the same.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { main } from "../cli/main.ts";
import { defaultPolicy } from "../party/default-policy.ts";
import { AUDIT_STREAM } from "../protocol/index.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";
import { sink } from "./sink.ts";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin/crosstalk.js");

let room: RoomServer;
beforeAll(async () => {
  room = await startRoom({ vars: { CROSSTALK_LOG_WINDOW: "1024" } });
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function cli(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = sink();
  const err = sink();
  const code = await main(["--host", room.host, ...args], {
    stdout: out.stream,
    stderr: err.stream,
    env: {},
    ...(stdin !== undefined ? { stdin: Readable.from([stdin]) } : {}),
  });
  return { code, stdout: out.text(), stderr: err.text() };
}

async function http(team: string, path: string): Promise<string> {
  const token = await room.token("ops", "admin", { team });
  const res = await fetch(`http://${room.host}/parties/main/${team}/${path}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  expect(res.status).toBe(200);
  return res.text();
}

/** Everything but the lines that name the export itself (its team, id and time). */
const body = (ndjson: string) =>
  ndjson
    .trim()
    .split("\n")
    .filter((l) => !/^\{"kind":"(header|end)"/.test(l));

async function populate(team: string): Promise<void> {
  const ops = await room.agent("ops", { team, role: "admin" });
  await ops.setPolicy({ ...defaultPolicy, retention: { prices: { compact: true, maxEvents: 2000 } } });
  const pub = await room.agent("pub", { team });
  for (let i = 0; i < 3500; i += 500)
    await pub.publishBatch(
      range(i, i + 499).map((n) => ({ type: "order.placed", data: { n, note: "é✓ \u2028" } })),
      { stream: "main" },
    );
  for (let i = 0; i < 4200; i += 600)
    await pub.publishBatch(
      range(i, i + 599).map((n) => ({ type: "price.set", data: { n }, options: { key: `p${n % 7}` } })),
      { stream: "prices" },
    );
  // Retention: removed segments and compaction holes, both restored exactly.
  const token = await room.token("ops", "admin", { team });
  const pass = await fetch(`http://${room.host}/parties/main/${team}/retention/prices`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
  });
  expect(await pass.json()).toMatchObject({ firstSeq: 2049, removed: { count: 2048, compacted: 1024 } });
  const deals = pub.state("deals");
  await deals.ready;
  for (let i = 0; i < 200; i++) deals.set(`D${i}`, { amount: i, stage: i % 3 ? "open" : "won" });
  for (let i = 0; i < 50; i++) deals.delete(`D${i * 2}`);
  const notes = pub.state("notes");
  await notes.ready;
  notes.set("n1", { text: "x".repeat(200_000) });
  // A durable consumer at 1500, a consumer group part way.
  const billing = await room.agent("billing", { team });
  const seen: number[] = [];
  billing.subscribe(
    ">",
    async (e) => {
      if (e.seq > 1500) await new Promise(() => {});
      seen.push(e.seq);
    },
    { consumer: "billing", from: "start" },
  );
  await eventually(() => expect(seen.length).toBe(1500));
  await eventually(async () => {
    const { consumers } = await billing.consumers("main");
    expect(consumers.find((c) => c.name === "billing")?.acked).toBe(1500);
  });
  const worker = await room.agent("worker", { team });
  let acked = 0;
  worker.subscribe(">", () => void acked++, {
    stream: "prices",
    group: "workers",
    maxAckPending: 4,
    from: "start",
  });
  await eventually(() => expect(acked).toBeGreaterThan(10));
  // An audit event: a forbidden publish.
  await expect(pub.publish("x", {}, { stream: AUDIT_STREAM })).rejects.toMatchObject({ code: "FORBIDDEN" });
  await eventually(async () => expect(await http(team, `streams/${AUDIT_STREAM}`)).toContain("audit.frame.refused"));
  // Writers stop, so the export is exact; the stored positions catch up first.
  for (const t of [ops, pub, billing, worker]) await t.close();
  await eventually(async () => {
    const deal = JSON.parse(await http(team, "state/deals")) as Record<string, unknown>;
    expect(Object.keys(deal)).toHaveLength(150);
  });
}

it("exports, imports into a new room (killed half-way, then rerun) and reads back byte for byte", async () => {
  const source = room.team("bk-src");
  const target = room.team("bk-dst");
  await populate(source);
  const adminSrc = await room.token("ops", "admin", { team: source });
  const adminDst = await room.token("ops", "admin", { team: target });

  const exported = await cli(["--token", adminSrc, "export", source]);
  expect(exported.code).toBe(0);
  expect(exported.stderr).toMatch(/export \[█+\] 100%/);
  const lines = exported.stdout.trim().split("\n");
  expect(JSON.parse(lines[0] as string)).toMatchObject({ kind: "header", format: "crosstalk-backup", team: source });
  // No line near a WebSocket message's limit, none holding a whole large namespace.
  expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(1_000_000);
  expect(lines.filter((l) => l.startsWith('{"kind":"state","ns":"notes"')).length).toBeGreaterThan(1);

  // A real import process, fed half the lines, killed once it has stored some of them.
  const child = spawn(
    process.execPath,
    [BIN, "--host", room.host, "--token", adminDst, "import", target, "--batch-bytes", "4096"],
    {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  // Killed with a write pending: its stdin's EPIPE is expected.
  child.stdin.on("error", () => {});
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const half = Math.floor(lines.length / 2);
  child.stdin.write(`${lines.slice(0, half).join("\n")}\n`);
  await eventually(() => expect(stderr).toMatch(/import \[[█░]+\] +[1-9]\d% /), { timeoutMs: 30_000 });
  child.kill("SIGKILL");
  await once(child, "close");
  const partial = await cli(["--token", adminDst, "export", target]);
  expect(body(partial.stdout).length).toBeLessThan(body(exported.stdout).length);
  expect(body(partial.stdout).length).toBeGreaterThan(1);

  // Another backup cannot be mixed in, and a room with data is not a restore target.
  expect((await cli(["--token", adminSrc, "import", source], exported.stdout)).stderr).toMatch(/CONFLICT/);

  // The rerun finishes it.
  const rerun = await cli(["--token", adminDst, "import", target], exported.stdout);
  expect(rerun.stderr).toMatch(/import \[█+\] 100%/);
  expect(rerun.code).toBe(0);
  // Idempotent: a third run changes nothing.
  expect((await cli(["--token", adminDst, "import", target], exported.stdout)).code).toBe(0);

  const restored = await cli(["--token", adminDst, "export", target]);
  expect(body(restored.stdout)).toEqual(body(exported.stdout));
  for (const [stream, from] of [
    ["main", 1],
    ["prices", 2049],
    [AUDIT_STREAM, 1],
  ] as const) {
    const path = `streams/${stream}?from=${from}&limit=100000`;
    expect(await http(target, path)).toBe(await http(source, path));
  }
  for (const ns of ["deals", "notes"])
    expect(await http(target, `state/${ns}`)).toBe(await http(source, `state/${ns}`));
  expect(await http(target, "policy")).toBe(await http(source, "policy"));

  // Agents of the restored team resume where they were: the durable consumer after 1500.
  const billing = await room.agent("billing", { team: target });
  const next: number[] = [];
  billing.subscribe(">", (e) => void next.push(e.seq), { consumer: "billing" });
  await eventually(() => expect(next[0]).toBe(1501));
  const { consumers } = await billing.consumers("prices");
  const original = await room.agent("reader", { team: source });
  expect(consumers).toEqual((await original.consumers("prices")).consumers);
});

it("refuses a backup line that is not what the room stores, with a typed error and none of its events applied", async () => {
  const team = room.team("bk-bad");
  const token = await room.token("ops", "admin", { team });
  const header = {
    kind: "header",
    format: "crosstalk-backup",
    version: 1,
    team,
    backupId: "b1",
    exportedAt: 0,
    totals: { lines: 2 },
  };
  const forged = {
    kind: "events",
    stream: "main",
    tail: 1,
    events: [{ id: "e1", type: "x", data: {}, stream: "other", seq: 1, ts: 1, source: "a" }],
  };
  const post = (lines: unknown[], auth = token) =>
    fetch(`http://${room.host}/parties/main/${team}/backup`, {
      method: "POST",
      headers: { authorization: `Bearer ${auth}` },
      body: lines.map((l) => JSON.stringify(l)).join("\n"),
    });
  const res = await post([header, forged]);
  expect(res.status).toBe(400);
  expect(await res.json()).toMatchObject({
    error: { code: "INVALID_ARGUMENT", message: expect.stringMatching(/not a stored event/) },
  });
  expect((await post([{ kind: "events" }])).status).toBe(400);
  expect(await http(team, "streams/main")).toBe("");
  // Only an admin may restore (or export).
  expect((await post([header], await room.token("worker", "agent", { team }))).status).toBe(403);
});

it("refuses an archived segment whose index is not what the room stores, so a crafted line cannot brick a stream", async () => {
  const team = room.team("bk-index");
  const token = await room.token("ops", "admin", { team });
  const header = {
    kind: "header",
    format: "crosstalk-backup",
    version: 1,
    team,
    backupId: "b-index",
    exportedAt: 0,
    totals: { lines: 2 },
  };
  const event = { id: "e1", type: "x.y", data: {}, stream: "main", seq: 1, ts: Date.now(), source: "a" };
  const post = (lines: unknown[]) =>
    fetch(`http://${room.host}/parties/main/${team}/backup`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: lines.map((l) => JSON.stringify(l)).join("\n"),
    });
  for (const index of [
    { ids: 5, seqs: [1, 1], lastTs: Date.now() },
    { ids: ["e1"], seqs: "1", lastTs: Date.now() },
    { ids: ["other"], seqs: [1, 1], lastTs: Date.now() },
    null,
  ]) {
    const res = await post([header, { kind: "segment", stream: "main", segment: 0, index, events: [event] }]);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "INVALID_ARGUMENT" } });
  }
  // Nothing was stored: the stream still works, and the team still exports.
  const pub = await room.agent("pub", { team });
  const [ack] = await pub.publishBatch([{ type: "x.y", data: { n: 1 } }], { stream: "main" });
  expect(ack?.seq).toBe(1);
  expect(body(await http(team, "backup")).some((l) => l.includes('"kind":"events"'))).toBe(true);
});

it("refuses a consumer line whose record the room could not have written (a hold retention would misread)", async () => {
  const team = room.team("bk-consumer");
  const token = await room.token("ops", "admin", { team });
  const header = {
    kind: "header",
    format: "crosstalk-backup",
    version: 1,
    team,
    backupId: "b-consumer",
    exportedAt: 0,
    totals: { lines: 2 },
  };
  const post = (lines: unknown[]) =>
    fetch(`http://${room.host}/parties/main/${team}/backup`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: lines.map((l) => JSON.stringify(l)).join("\n"),
    });
  for (const line of [
    { kind: "consumer", key: "cons|main|billing", record: { acked: "none", updatedAt: 0 } },
    { kind: "consumer", key: "cons|main|billing", record: null },
    { kind: "consumer", key: "grp|main|workers", record: { floor: null, done: [], deliveries: [], updatedAt: 0 } },
    { kind: "consumer", key: "grp|main|workers", record: "x" },
  ]) {
    const res = await post([header, line]);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "INVALID_ARGUMENT" } });
  }
  // A record as the room writes it is restored.
  const ok = await post([header, { kind: "consumer", key: "cons|main|billing", record: { acked: 0, updatedAt: 1 } }]);
  expect(ok.status).toBe(200);
  const reader = await room.agent("reader", { team });
  expect((await reader.consumers("main")).consumers).toMatchObject([{ name: "billing", acked: 0 }]);
});

it("refuses to call a backup without its end line complete, on import", async () => {
  const source = room.team("bk-trunc-src");
  const pub = await room.agent("pub", { team: source });
  await pub.publishBatch([{ type: "x.y", data: { n: 1 } }], { stream: "main" });
  const exported = await cli(["--token", await room.token("ops", "admin", { team: source }), "export", source]);
  expect(exported.code).toBe(0);
  const lines = exported.stdout.trim().split("\n");
  expect(JSON.parse(lines.at(-1) as string)).toMatchObject({ kind: "end" });
  const target = room.team("bk-trunc-dst");
  const truncated = `${lines.slice(0, -1).join("\n")}\n`;
  const imported = await cli(
    ["--token", await room.token("ops", "admin", { team: target }), "import", target],
    truncated,
  );
  expect(imported.code).not.toBe(0);
  expect(imported.stderr).toMatch(/incomplete/);
});
