/**
 * Admission in-process, without a server: who holds an agent id (an unsigned claim is
 * refused 4409, a signed connection takes over, the same instance replaces itself) and the
 * expiry timer that ends a signed session at its token's `exp`. Over real sockets:
 * test/identity.test.ts.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { CLOSE_CODES, type Identity, PROTOCOL_VERSION } from "../protocol/index.ts";
import { TeamRoom } from "./room.ts";
import type { KvStorage } from "./storage.ts";

const empty: KvStorage = {
  get: async () => undefined,
  list: async () => new Map(),
  put: async () => {},
  delete: async () => 0,
};

function connect(room: TeamRoom, query: string, identity?: Identity) {
  const socket = { send: vi.fn(), close: vi.fn() };
  const session = room.connect(
    socket,
    new URL(`http://room/parties/main/acme?v=${PROTOCOL_VERSION}&${query}`),
    identity,
  );
  return { socket, session };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("an agent id held by another instance", () => {
  it("is refused 4409 to an unsigned claim", () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    const first = connect(room, "agent=a&_pk=one");
    const second = connect(room, "agent=a&_pk=two");
    expect(second.session).toBeNull();
    expect(second.socket.close).toHaveBeenCalledWith(CLOSE_CODES.AgentIdInUse.code, expect.any(String));
    expect(first.socket.close).not.toHaveBeenCalled();
  });

  it("is taken over by a signed connection; the older socket closes with TakenOver (fatal for its client)", () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    const identity = { agent: "a", role: "sales" };
    const first = connect(room, "_pk=one", identity);
    const second = connect(room, "_pk=two", identity);
    expect(second.session).not.toBeNull();
    expect(first.socket.close).toHaveBeenCalledWith(CLOSE_CODES.TakenOver.code, CLOSE_CODES.TakenOver.reason);
    expect(room.presence.get("a")).toBe(second.session);
    expect(room.admission.size).toBe(1);
  });

  it("is handed from an instance's old socket to its new one with Replaced", () => {
    const room = new TeamRoom({ team: "acme", storage: empty });
    const identity = { agent: "a", role: "sales" };
    const first = connect(room, "_pk=one", identity);
    connect(room, "_pk=one", identity);
    expect(first.socket.close).toHaveBeenCalledWith(CLOSE_CODES.Replaced.code, CLOSE_CODES.Replaced.reason);
  });
});

describe("a signed session's expiry", () => {
  it("closes the socket with TokenExpired when exp passes, once", () => {
    vi.useFakeTimers();
    const room = new TeamRoom({ team: "acme", storage: empty });
    const agent = connect(room, "", { agent: "a", role: "r", expiresAt: Date.now() + 5_000 });
    const raw = connect(room, "doc=state/deals", { agent: "b", role: "r", expiresAt: Date.now() + 5_000 });
    vi.advanceTimersByTime(4_999);
    expect(agent.socket.close).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    for (const s of [agent, raw])
      expect(s.socket.close).toHaveBeenCalledWith(CLOSE_CODES.TokenExpired.code, CLOSE_CODES.TokenExpired.reason);
    expect(room.presence.get("a")).toBeUndefined();
    vi.advanceTimersByTime(60_000);
    expect(agent.socket.close).toHaveBeenCalledTimes(1);
  });

  it("is forgotten when the socket closes first (no timer left behind)", () => {
    vi.useFakeTimers();
    const room = new TeamRoom({ team: "acme", storage: empty });
    const agent = connect(room, "", { agent: "a", role: "r", expiresAt: Date.now() + 5_000 });
    room.close(agent.socket);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(agent.socket.close).not.toHaveBeenCalled();
  });

  it("re-arms past setTimeout's 24.8-day limit, and refuses an already expired identity at once", () => {
    vi.useFakeTimers();
    const room = new TeamRoom({ team: "acme", storage: empty });
    const day = 86_400_000;
    const long = connect(room, "", { agent: "a", role: "r", expiresAt: Date.now() + 30 * day });
    vi.advanceTimersByTime(25 * day);
    expect(long.socket.close).not.toHaveBeenCalled();
    vi.advanceTimersByTime(5 * day);
    expect(long.socket.close).toHaveBeenCalledWith(CLOSE_CODES.TokenExpired.code, expect.any(String));
    const stale = connect(room, "", { agent: "b", role: "r", expiresAt: Date.now() - 1 });
    expect(stale.session).toBeNull();
    expect(stale.socket.close).toHaveBeenCalledWith(CLOSE_CODES.TokenExpired.code, expect.any(String));
  });
});
