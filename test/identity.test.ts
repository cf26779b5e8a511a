/**
 * Signed identities end to end, through real `partykit dev` rooms configured with `--var`:
 * edge refusals a real client sees as named close codes, a spoofed identity header, a token
 * expiring mid-session, no reconnect storm, session takeover, a room with no key, the
 * development token endpoint, EdDSA key rotation and the HTTP views.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { CLOSE_CODES, connect, generateKeyPair, type KeyPair, mintToken, type Team } from "../client/node.ts";
import { PROTOCOL_VERSION, parseRoomFrame, type RoomFrame } from "../protocol/index.ts";
import { signAgentToken } from "../protocol/token.ts";
import { eventually, type RoomServer, startRoom } from "./harness.ts";

type Closed = { code: number; reason: string };

/** Opens a raw socket to `team`'s room; resolves once it closes, or when it is welcomed. */
function raw(
  room: RoomServer,
  team: string,
  query: string,
  headers: Record<string, string> = {},
): Promise<{ closed?: Closed; welcome?: RoomFrame; ws: WebSocket }> {
  const ws = new WebSocket(`ws://${room.host}/parties/main/${team}?v=${PROTOCOL_VERSION}&${query}`, { headers });
  return new Promise((resolve, reject) => {
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const parsed = parseRoomFrame(String(data));
      if (parsed.ok && parsed.frame.type === "welcome") resolve({ welcome: parsed.frame, ws });
    });
    ws.on("close", (code, reason) => resolve({ closed: { code, reason: String(reason) }, ws }));
    ws.on("error", reject);
  });
}

/** A `ws` class that records every socket it opens and how each one closed. */
function recordingSocket() {
  const opened: number[] = [];
  const closes: number[] = [];
  class Recording extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      opened.push(Date.now());
      this.on("close", (code) => closes.push(code));
    }
  }
  return { WebSocket: Recording, opened, closes };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A token whose `exp` has already passed (signed with the room's key). */
const expiredToken = (secret: string, team: string, agent: string) =>
  signAgentToken({
    key: new TextEncoder().encode(secret),
    alg: "HS256",
    team,
    agent,
    role: "agent",
    ttl: 60,
    now: Date.now() - 3_600_000,
  });

const SECRET = "identity-test-secret-0123456789abcdef";

describe("a room with an HS256 key", () => {
  let room: RoomServer;
  const opened: Team[] = [];
  beforeAll(async () => {
    room = await startRoom({ secret: SECRET });
  });
  afterAll(async () => {
    await Promise.all(opened.map((t) => t.close()));
    await room?.[Symbol.asyncDispose]();
  });

  const client = async (options: Parameters<typeof connect>[0]) => {
    const team = await connect(options);
    opened.push(team);
    return team;
  };

  it("refuses sockets at the edge with 4401 / 4403 / 4001, and a real client reports them", async () => {
    const team = room.team("edge");
    const cases: [string, string, number][] = [
      ["no token", "agent=a", CLOSE_CODES.Unauthorized.code],
      ["a malformed token", "agent=a&token=abc", CLOSE_CODES.Unauthorized.code],
      [
        "a bad signature",
        `agent=a&token=${await mintToken({ secret: "x".repeat(40), team, agent: "a", role: "r", ttl: 60 })}`,
        CLOSE_CODES.Unauthorized.code,
      ],
      [
        "another team's token",
        `agent=a&token=${await room.token("a", "agent", { team: "other-team" })}`,
        CLOSE_CODES.Forbidden.code,
      ],
      [
        "?agent= not the token's",
        `agent=b&token=${await room.token("a", "agent", { team })}`,
        CLOSE_CODES.Forbidden.code,
      ],
      ["an expired token", `agent=a&token=${await expiredToken(SECRET, team, "a")}`, CLOSE_CODES.TokenExpired.code],
    ];
    for (const [what, query, code] of cases) {
      const result = await raw(room, team, query);
      expect(result.closed?.code, what).toBe(code);
    }

    // Through the client: a typed refusal, not a reconnect loop.
    const base = { host: room.host, team, agent: "a", role: "agent", connectTimeoutMs: 10_000 };
    await expect(client({ ...base })).rejects.toMatchObject({ code: "UNAUTHORIZED" });
    await expect(client({ ...base, token: "abc" })).rejects.toMatchObject({ code: "UNAUTHORIZED" });
    const otherTeam = await room.token("a", "agent", { team: "other-team" });
    await expect(client({ ...base, token: otherTeam })).rejects.toMatchObject({ code: "FORBIDDEN" });
    const forB = await room.token("b", "agent", { team });
    await expect(client({ ...base, token: forB })).rejects.toMatchObject({ code: "FORBIDDEN" });
    // A valid token is admitted with the token's identity.
    const ok = await client({ ...base, token: await room.token("a", "sales", { team }) });
    expect(ok.status).toBe("online");
    expect(ok.agents().find((x) => x.agent === "a")?.role).toBe("sales");
  });

  it("ignores a spoofed identity header: the token decides who the agent is", async () => {
    const team = room.team("spoof");
    const spoof = {
      "x-crosstalk-identity": encodeURIComponent(JSON.stringify({ agent: "boss", role: "admin" })),
    };
    expect((await raw(room, team, "agent=boss", spoof)).closed?.code).toBe(CLOSE_CODES.Unauthorized.code);
    const admitted = await raw(room, team, `token=${await room.token("intern", "interns", { team })}`, spoof);
    expect(admitted.welcome).toMatchObject({ agent: "intern", role: "interns" });
    admitted.ws.close();
    const http = await fetch(`http://${room.host}/parties/main/${team}/agents`, { headers: spoof });
    expect(http.status).toBe(401);
  });

  it("a token that expires mid-session closes with 4001; the client reconnects with a fresh token and its subscription resumes", async () => {
    const team = room.team("expiry");
    const recorder = recordingSocket();
    let asked = 0;
    const reader = await client({
      host: room.host,
      team,
      agent: "reader",
      role: "agent",
      WebSocket: recorder.WebSocket,
      token: () => {
        asked++;
        return room.token("reader", "agent", { team, ttl: 3 });
      },
    });
    const seen: number[] = [];
    await reader.subscribe("deal.*", (e) => void seen.push(e.seq), { from: "start" });
    const writer = await room.agent("writer", { team });
    await writer.publish("deal.created", {});
    await eventually(() => expect(seen).toEqual([1]));

    const statuses: string[] = [];
    reader.on("status", (s) => statuses.push(s));
    await eventually(() => expect(recorder.closes).toContain(CLOSE_CODES.TokenExpired.code), { timeoutMs: 10_000 });
    await eventually(() => expect(statuses).toEqual(["offline", "online"]));
    expect(asked).toBeGreaterThanOrEqual(2);
    await writer.publish("deal.closed", {});
    await eventually(() => expect(seen).toEqual([1, 2]));
  });

  it("makes no reconnect storm: none after a fatal code, one attempt per backoff step for an expired token", async () => {
    const team = room.team("storm");
    // Fatal: exactly one socket, and the token provider is asked once.
    const fatal = recordingSocket();
    let asked = 0;
    const refused = await client({
      host: room.host,
      team,
      agent: "a",
      role: "agent",
      waitForOnline: false,
      WebSocket: fatal.WebSocket,
      token: () => {
        asked++;
        return "not-a-token";
      },
    });
    await eventually(() => expect(refused.status).toBe("closed"));
    await sleep(3_000);
    expect(fatal.opened).toHaveLength(1);
    expect(asked).toBe(1);
    expect(fatal.closes).toEqual([CLOSE_CODES.Unauthorized.code]);

    // A provider stuck on an expired token: retried after random delays below growing bounds
    // (100 ms · 2^n, full jitter), so over 3 s about 6 attempts (bounds 0, 100, 200, 400, 800,
    // 1600 ms; the mean delay is half of each), never a storm.
    const stale = recordingSocket();
    const token = await expiredToken(SECRET, team, "b");
    const retrying = await client({
      host: room.host,
      team,
      agent: "b",
      role: "agent",
      waitForOnline: false,
      WebSocket: stale.WebSocket,
      token: () => token,
    });
    await sleep(3_000);
    const attempts = stale.opened.length;
    retrying.close();
    expect(attempts).toBeGreaterThanOrEqual(3);
    expect(attempts).toBeLessThanOrEqual(12);
    // One attempt per backoff step: no gap exceeds its step's bound (plus the time an attempt
    // itself takes), so the client keeps trying while it backs off.
    const gaps = stale.opened.slice(1).map((t, i) => t - (stale.opened[i] as number));
    gaps.forEach((gap, i) => {
      expect(gap).toBeLessThanOrEqual(Math.min(5000, 100 * 2 ** i) + 300);
    });
    expect(new Set(stale.closes)).toEqual(new Set([CLOSE_CODES.TokenExpired.code]));
  });

  it("a newer authenticated connection of the same agent takes over; the older client stops for good", async () => {
    const team = room.team("takeover");
    const first = recordingSocket();
    const old = await client({
      host: room.host,
      team,
      agent: "sales-1",
      role: "sales",
      WebSocket: first.WebSocket,
      token: () => room.token("sales-1", "sales", { team }),
    });
    const watcher = await room.agent("watcher", { team });
    expect((await old.publish("before.takeover", {})).seq).toBe(1);
    const next = await room.agent("sales-1", { team, role: "sales" });
    await eventually(() => expect(old.status).toBe("closed"));
    expect(first.closes).toEqual([CLOSE_CODES.TakenOver.code]);
    await expect(old.online()).rejects.toMatchObject({
      code: "CONFLICT",
      message: expect.stringMatching(/taken over/),
    });
    // No ping-pong: seconds later the new one is still online, and the old opened no socket.
    await sleep(2_000);
    expect(next.status).toBe("online");
    expect(first.opened).toHaveLength(1);
    expect(watcher.agents().filter((a) => a.agent === "sales-1")).toHaveLength(1);
    expect((await next.publish("after.takeover", {})).seq).toBe(2);
  });

  it("the development token endpoint does not exist without CROSSTALK_DEV", async () => {
    const team = room.team("nodev");
    const path = `/parties/main/${team}/dev/token?agent=a&role=agent`;
    expect((await fetch(`http://${room.host}${path}`)).status).toBe(401);
    expect((await room.fetch(path)).status).toBe(404);
  });

  it("HTTP views take a bearer token (header or ?token=) and refuse without one", async () => {
    const team = room.team("http");
    const url = `http://${room.host}/parties/main/${team}/agents`;
    const none = await fetch(url);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toBe("Bearer");
    expect(await none.json()).toMatchObject({ error: { code: "UNAUTHORIZED" } });
    const token = await room.token("curl", "agent", { team });
    expect((await fetch(url, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${url}?token=${token}`)).status).toBe(200);
    const elsewhere = await room.token("curl", "agent", { team: "other-team" });
    expect((await fetch(url, { headers: { authorization: `Bearer ${elsewhere}` } })).status).toBe(403);
    const expired = await fetch(url, { headers: { authorization: `Bearer ${await expiredToken(SECRET, team, "c")}` } });
    expect(expired.status).toBe(401);
    expect(expired.headers.get("www-authenticate")).toMatch(/invalid_token/);
  });

  it("a stock y-websocket provider syncs with a token in its params, and is refused without one", async () => {
    const team = room.team("yjs");
    const agent = await room.agent("writer", { team });
    const deals = agent.state("deals");
    await deals.ready;
    deals.set("D1", { amount: 5 });
    const doc = new Y.Doc();
    const provider = new WebsocketProvider(`ws://${room.host}/parties/main`, team, doc, {
      WebSocketPolyfill: WebSocket as unknown as typeof globalThis.WebSocket,
      params: { doc: "state/deals", token: await room.token("yjs-viewer", "viewer", { team }) },
      disableBc: true,
    });
    try {
      await eventually(() => expect(doc.getMap("fields").get("D1\u001famount")).toBe(5));
    } finally {
      provider.destroy();
    }
    expect((await raw(room, team, "doc=state/deals")).closed?.code).toBe(CLOSE_CODES.Unauthorized.code);
  });
});

describe("a room with no key and dev mode off", () => {
  let room: RoomServer;
  beforeAll(async () => {
    room = await startRoom({ secret: null });
  });
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });

  it("refuses every connection and request, and says why once in its log", async () => {
    const team = room.team("nokey");
    const anyToken = await mintToken({ secret: SECRET, team, agent: "a", role: "agent", ttl: 60 });
    for (let i = 0; i < 3; i++) {
      expect((await raw(room, team, `agent=a&token=${anyToken}`)).closed?.code).toBe(CLOSE_CODES.Unauthorized.code);
    }
    await expect(connect({ host: room.host, team, agent: "a", role: "agent", token: anyToken })).rejects.toMatchObject({
      code: "UNAUTHORIZED",
    });
    expect((await fetch(`http://${room.host}/parties/main/${team}/agents?token=${anyToken}`)).status).toBe(401);
    expect((await fetch(`http://${room.host}/parties/main/${team}/dev/token?agent=a`)).status).toBe(401);
    await eventually(() => expect(room.output()).toContain("no key configured"));
    expect(room.output().split("refusing every connection").length - 1).toBe(1);
  });
});

describe("a room in development mode", () => {
  let room: RoomServer;
  beforeAll(async () => {
    room = await startRoom({ vars: { CROSSTALK_DEV: "1" } });
  });
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });

  it("mints tokens at GET …/dev/token, which an agent's token provider fetches", async () => {
    const team = room.team("dev");
    const minted = async () => {
      const res = await fetch(`http://${room.host}/parties/main/${team}/dev/token?agent=viewer-1&role=viewer`);
      expect(res.status).toBe(200);
      return ((await res.json()) as { token: string }).token;
    };
    const viewer = await connect({ host: room.host, team, agent: "viewer-1", role: "viewer", token: minted });
    try {
      expect(viewer.agents().map((a) => [a.agent, a.role])).toEqual([["viewer-1", "viewer"]]);
    } finally {
      await viewer.close();
    }
  });
});

describe("a room with EdDSA keys only", () => {
  let room: RoomServer;
  let old: KeyPair;
  let next: KeyPair;
  beforeAll(async () => {
    [old, next] = await Promise.all([generateKeyPair({ kid: "2025-old" }), generateKeyPair({ kid: "2025-next" })]);
    const jwks = JSON.stringify({ keys: [old.publicJwk, next.publicJwk] });
    room = await startRoom({ secret: null, vars: { CROSSTALK_JWKS: jwks } });
  });
  afterAll(async () => {
    await room?.[Symbol.asyncDispose]();
  });

  it("admits tokens signed with either key (rotation), refuses an unknown kid and HS256", async () => {
    const team = room.team("eddsa");
    const mint = (privateJwk: KeyPair["privateJwk"], agent: string) =>
      mintToken({ privateJwk, team, agent, role: "agent", ttl: "5m" });
    const a = await connect({
      host: room.host,
      team,
      agent: "a",
      role: "agent",
      token: await mint(old.privateJwk, "a"),
    });
    const b = await connect({
      host: room.host,
      team,
      agent: "b",
      role: "agent",
      token: await mint(next.privateJwk, "b"),
    });
    try {
      expect((await a.publish("x.y", {})).seq).toBe(1);
      await eventually(() =>
        expect(
          b
            .agents()
            .map((x) => x.agent)
            .sort(),
        ).toEqual(["a", "b"]),
      );
      const stranger = await generateKeyPair({ kid: "2025-stranger" });
      expect((await raw(room, team, `token=${await mint(stranger.privateJwk, "c")}`)).closed?.code).toBe(
        CLOSE_CODES.Unauthorized.code,
      );
      const hs = await mintToken({ secret: SECRET, team, agent: "c", role: "agent", ttl: 60 });
      expect((await raw(room, team, `token=${hs}`)).closed?.code).toBe(CLOSE_CODES.Unauthorized.code);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
