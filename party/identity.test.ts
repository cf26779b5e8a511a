/**
 * Token verification without a server (`party/identity.ts`): every way a token can fail maps
 * to the refusal the edge turns into 4401 / 4403 / 4001, and the identity header cannot be
 * spoofed. End-to-end through `partykit dev` is in test/identity.test.ts.
 */
import { describe, expect, it, vi } from "vitest";
import { generateKeyPair, mintToken } from "../client/node.ts";
import { CLOSE_CODES, CrosstalkError, type Identity } from "../protocol/index.ts";
import {
  authenticate,
  devTokenResponse,
  IDENTITY_HEADER,
  identityOf,
  readAuthConfig,
  refusalClose,
  refusalResponse,
  tokenOf,
  verifyToken,
  withIdentity,
} from "./identity.ts";

const SECRET = "s".repeat(16) + "e".repeat(16);
const base = { team: "acme", agent: "sales-1", role: "sales", ttl: "15m" } as const;

function config(env: Record<string, unknown>) {
  const result = readAuthConfig(env);
  if (!result.ok) throw new Error(result.problem);
  return result.config;
}

const hs = config({ CROSSTALK_HS256_SECRET: SECRET });

describe("verifyToken", () => {
  it("turns a valid HS256 token into the identity: agent from sub, role, perms as scope, exp in ms", async () => {
    const token = await mintToken({ ...base, secret: SECRET, perms: ["state:read:deals"], issuer: "ci" });
    const verdict = await verifyToken(token, { team: "acme", config: hs });
    expect(verdict.ok).toBe(true);
    const identity = (verdict as { identity: Identity }).identity;
    expect(identity).toMatchObject({ agent: "sales-1", role: "sales", scope: ["state:read:deals"], issuer: "ci" });
    expect(identity.expiresAt).toBeGreaterThan(Date.now() + 14 * 60_000);
    expect(identity.expiresAt).toBeLessThanOrEqual(Date.now() + 15 * 60_000);
  });

  it.each<[string, () => Promise<string>, string]>([
    ["no token", async () => "", "unauthenticated"],
    ["a malformed token", async () => "not.a.jwt", "unauthenticated"],
    ["a bad signature", () => mintToken({ ...base, secret: "x".repeat(32) }), "unauthenticated"],
    ["a tampered payload", async () => tamper(await mintToken({ ...base, secret: SECRET })), "unauthenticated"],
    ["another team's token", () => mintToken({ ...base, team: "globex", secret: SECRET }), "forbidden"],
  ])("refuses %s", async (_, token, kind) => {
    const verdict = await verifyToken(await token(), { team: "acme", config: hs });
    expect(verdict).toMatchObject({ ok: false, refusal: { kind } });
  });

  it("says expired (the one refusal a new token cures) once exp has passed", async () => {
    const token = await mintToken({ ...base, ttl: 60, secret: SECRET });
    expect((await verifyToken(token, { team: "acme", config: hs, now: Date.now() + 30_000 })).ok).toBe(true);
    expect(await verifyToken(token, { team: "acme", config: hs, now: Date.now() + 61_000 })).toMatchObject({
      ok: false,
      refusal: { kind: "expired" },
    });
  });

  it("checks the issuer when one is configured", async () => {
    const strict = config({ CROSSTALK_HS256_SECRET: SECRET, CROSSTALK_ISSUER: "acme-auth" });
    const good = await mintToken({ ...base, secret: SECRET, issuer: "acme-auth" });
    const other = await mintToken({ ...base, secret: SECRET, issuer: "someone" });
    expect((await verifyToken(good, { team: "acme", config: strict })).ok).toBe(true);
    expect(await verifyToken(other, { team: "acme", config: strict })).toMatchObject({
      refusal: { kind: "unauthenticated" },
    });
  });

  it("EdDSA: picks the key by kid, so two keys in the JWKS both verify (rotation); an unknown kid is refused", async () => {
    const [old, next, stranger] = await Promise.all([
      generateKeyPair({ kid: "old" }),
      generateKeyPair({ kid: "next" }),
      generateKeyPair({ kid: "stranger" }),
    ]);
    const jwks = config({ CROSSTALK_JWKS: JSON.stringify({ keys: [old.publicJwk, next.publicJwk] }) });
    for (const pair of [old, next]) {
      const token = await mintToken({ ...base, privateJwk: pair.privateJwk });
      expect(await verifyToken(token, { team: "acme", config: jwks })).toMatchObject({
        ok: true,
        identity: { agent: "sales-1" },
      });
    }
    const unknown = await mintToken({ ...base, privateJwk: stranger.privateJwk });
    expect(await verifyToken(unknown, { team: "acme", config: jwks })).toMatchObject({
      refusal: { kind: "unauthenticated", message: expect.stringMatching(/kid/) },
    });
    // A stranger's key under a known kid fails on the signature.
    const forged = await mintToken({ ...base, privateJwk: { ...stranger.privateJwk, kid: "old" } });
    expect(await verifyToken(forged, { team: "acme", config: jwks })).toMatchObject({
      refusal: { kind: "unauthenticated", message: "bad token signature" },
    });
    // HS256 is refused where only EdDSA keys are configured (production), and the reverse.
    const hsToken = await mintToken({ ...base, secret: SECRET });
    expect(await verifyToken(hsToken, { team: "acme", config: jwks })).toMatchObject({
      refusal: { message: expect.stringMatching(/HS256 tokens are not accepted/) },
    });
    const edToken = await mintToken({ ...base, privateJwk: old.privateJwk });
    expect(await verifyToken(edToken, { team: "acme", config: hs })).toMatchObject({ ok: false });
  });

  it("refuses a token without a role or with an invalid agent id", async () => {
    const { SignJWT } = await import("jose");
    const key = new TextEncoder().encode(SECRET);
    const sign = (claims: Record<string, unknown>, sub: string) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(sub)
        .setAudience("crosstalk:acme")
        .setExpirationTime("1h")
        .sign(key);
    expect(await verifyToken(await sign({}, "a"), { team: "acme", config: hs })).toMatchObject({
      refusal: { kind: "unauthenticated", message: "invalid token claim role" },
    });
    expect(await verifyToken(await sign({ role: "x" }, "bad id"), { team: "acme", config: hs })).toMatchObject({
      refusal: { kind: "unauthenticated", message: "invalid token claim sub" },
    });
  });
});

describe("readAuthConfig", () => {
  it.each([
    [{}, /no key configured/],
    [{ CROSSTALK_HS256_SECRET: "short" }, /fewer than 32/],
    [{ CROSSTALK_JWKS: "{" }, /not JSON/],
    [{ CROSSTALK_JWKS: '{"keys":[]}' }, /at least one key/],
    [{ CROSSTALK_DEV: "1", CROSSTALK_JWKS: "" }, /no key configured/],
  ])("names what is wrong with %j", (env, problem) => {
    expect(readAuthConfig(env)).toMatchObject({ ok: false, problem: expect.stringMatching(problem) });
  });

  it("refuses private keys, keys without kid and duplicate kids in the JWKS; dev mode needs the HS256 secret", async () => {
    const pair = await generateKeyPair({ kid: "k1" });
    const jwks = (keys: unknown[]) => ({ CROSSTALK_JWKS: JSON.stringify({ keys }) });
    expect(readAuthConfig(jwks([pair.privateJwk]))).toMatchObject({
      problem: expect.stringMatching(/public keys only/),
    });
    expect(readAuthConfig(jwks([{ ...pair.publicJwk, kid: undefined }]))).toMatchObject({
      problem: expect.stringMatching(/kid/),
    });
    expect(readAuthConfig(jwks([pair.publicJwk, pair.publicJwk]))).toMatchObject({
      problem: expect.stringMatching(/share kid/),
    });
    expect(readAuthConfig({ ...jwks([pair.publicJwk]), CROSSTALK_DEV: "1" })).toMatchObject({
      problem: expect.stringMatching(/CROSSTALK_DEV needs/),
    });
    // An object (partykit may hand JSON vars over parsed) works like its JSON text.
    expect(readAuthConfig({ CROSSTALK_JWKS: { keys: [pair.publicJwk] } })).toMatchObject({ ok: true });
  });
});

describe("the edge's helpers", () => {
  const request = (url: string, headers: Record<string, string> = {}) => new Request(url, { headers });

  it("takes the token from Authorization: Bearer or ?token=", () => {
    expect(tokenOf(request("http://h/parties/main/acme", { authorization: "Bearer abc" }))).toBe("abc");
    expect(tokenOf(request("http://h/parties/main/acme?token=xyz"))).toBe("xyz");
    expect(tokenOf(request("http://h/parties/main/acme"))).toBeNull();
  });

  it("replaces a client-sent identity header with the verified one, and reads back only valid identities", () => {
    const spoofed = encodeURIComponent(JSON.stringify({ agent: "boss", role: "admin" }));
    const req = request("http://h/parties/main/acme", { [IDENTITY_HEADER]: spoofed });
    const forwarded = withIdentity(req, { agent: "sales-1", role: "sales", expiresAt: 1 });
    expect(identityOf(forwarded.headers)).toEqual({ agent: "sales-1", role: "sales", expiresAt: 1 });
    expect(forwarded.headers.get(IDENTITY_HEADER)).not.toContain("boss");
    expect(identityOf(new Headers({ [IDENTITY_HEADER]: "%E0%A4%A" }))).toBeNull();
    expect(
      identityOf(new Headers({ [IDENTITY_HEADER]: encodeURIComponent('{"agent":"bad id","role":"x"}') })),
    ).toBeNull();
  });

  it("refuses sockets with named codes and HTTP with 401 + WWW-Authenticate or 403", async () => {
    expect(refusalClose({ kind: "unauthenticated", message: "m" }).code).toBe(CLOSE_CODES.Unauthorized.code);
    expect(refusalClose({ kind: "forbidden", message: "m" }).code).toBe(CLOSE_CODES.Forbidden.code);
    expect(refusalClose({ kind: "expired", message: "m" }).code).toBe(CLOSE_CODES.TokenExpired.code);
    const long = refusalClose({ kind: "forbidden", message: "é".repeat(200) }).reason;
    expect(new TextEncoder().encode(long).length).toBeLessThanOrEqual(123);
    const unauthorized = refusalResponse({ kind: "unauthenticated", message: "no token" });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get("www-authenticate")).toBe("Bearer");
    expect(await unauthorized.json()).toEqual({ error: { code: "UNAUTHORIZED", message: "no token" } });
    expect(refusalResponse({ kind: "expired", message: "token expired" }).headers.get("www-authenticate")).toMatch(
      /invalid_token/,
    );
    expect(refusalResponse({ kind: "forbidden", message: "x" }).status).toBe(403);
  });

  it("with no key, refuses everything and logs why once", async () => {
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    const env = { CROSSTALK_JWKS: "", CROSSTALK_ISSUER: "once-test" };
    for (let i = 0; i < 3; i++) {
      const verdict = await authenticate(request("http://h/parties/main/acme?token=x"), { team: "acme", env });
      expect(verdict).toMatchObject({ ok: false, refusal: { kind: "unauthenticated" } });
    }
    expect(log.mock.calls.filter((c) => String(c[0]).includes("no key configured"))).toHaveLength(1);
    log.mockRestore();
  });

  it("mints dev tokens only in dev mode", async () => {
    const url = "http://h/parties/main/acme/dev/token?agent=viewer-1&role=viewer";
    expect(await devTokenResponse(request(url), { team: "acme", env: { CROSSTALK_HS256_SECRET: SECRET } })).toBeNull();
    const env = { CROSSTALK_HS256_SECRET: SECRET, CROSSTALK_DEV: "1" };
    const res = (await devTokenResponse(request(url), { team: "acme", env })) as Response;
    const { token } = (await res.json()) as { token: string };
    expect(await verifyToken(token, { team: "acme", config: config(env) })).toMatchObject({
      identity: { agent: "viewer-1", role: "viewer" },
    });
    const bad = (await devTokenResponse(request("http://h/parties/main/acme/dev/token"), {
      team: "acme",
      env,
    })) as Response;
    expect(bad.status).toBe(400);
  });
});

describe("mintToken", () => {
  it("refuses bad input with typed errors", async () => {
    await expect(mintToken({ ...base, secret: "short" })).rejects.toBeInstanceOf(CrosstalkError);
    await expect(mintToken({ ...base })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(mintToken({ ...base, secret: SECRET, ttl: "soon" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(mintToken({ ...base, secret: SECRET, agent: "no spaces" })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    const pair = await generateKeyPair();
    await expect(mintToken({ ...base, privateJwk: pair.publicJwk })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });
});

/** Flips the payload's role to admin, keeping the original signature. */
function tamper(token: string): string {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  return [header, Buffer.from(JSON.stringify({ ...claims, role: "admin" })).toString("base64url"), signature].join(".");
}
