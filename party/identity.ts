/**
 * Who is knocking: verifies an agent's signed token (a JWT) into the {@link Identity} the
 * room stamps on everything it does. Host-independent — plain `Request`/`Response` and
 * jose on WebCrypto — so the PartyKit adapter (`server.ts`), a partyserver adapter or an
 * in-process test room all verify the same way.
 *
 * Keys come from the environment (`readAuthConfig`):
 * - `CROSSTALK_JWKS`: Ed25519 public keys as a JWKS, each with a `kid`; tokens are EdDSA,
 *   signed by whoever holds the private key (`crosstalk keygen`, `crosstalk token`). The
 *   room holds no secret. To rotate: add the new key, sign with it, drop the old one once
 *   its tokens have expired.
 * - `CROSSTALK_HS256_SECRET`: a shared secret (32+ characters), for development.
 * - `CROSSTALK_ISSUER`: if set, tokens must carry this `iss`.
 * - `CROSSTALK_DEV=1`: development mode; enables `GET …/<team>/dev/token` (`devTokenResponse`),
 *   which mints HS256 tokens for anyone who asks. Never set it where the room is reachable.
 * With no key at all the room refuses every connection, and says why once in its log.
 */
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import {
  CLOSE_CODES,
  type ErrorBody,
  type Identity,
  identitySchema,
  MAX_IDENTITY_BYTES,
  nameSchema,
  tokenAudience,
  tokenClaimsSchema,
} from "../protocol/index.ts";
import { signAgentToken } from "../protocol/token.ts";

/**
 * The header the edge hands the verified identity to the room in. The edge deletes any copy
 * a client sent before setting it, so the room can trust it.
 */
export const IDENTITY_HEADER = "x-crosstalk-identity";

export type AuthConfig = {
  /** Ed25519 public keys by `kid`, or null when `CROSSTALK_JWKS` is not set. */
  readonly jwks: JWTVerifyGetKey | null;
  /** The HS256 secret, or null when `CROSSTALK_HS256_SECRET` is not set. */
  readonly secret: Uint8Array | null;
  readonly issuer: string | null;
  /** `CROSSTALK_DEV`: the development token endpoint exists. */
  readonly dev: boolean;
};

export type ConfigResult = { ok: true; config: AuthConfig } | { ok: false; problem: string };

/** Why a token does not admit its bearer; `expired` is the one a new token cures. */
export type Refusal = { kind: "unauthenticated" | "expired" | "forbidden"; message: string };
export type Verdict = { ok: true; identity: Identity } | { ok: false; refusal: Refusal };

const MIN_SECRET_LENGTH = 32;
/** Dev tokens live an hour; the demo asks for a new one on every reconnect. */
const DEV_TOKEN_TTL_S = 3600;

let cached: { key: string; result: ConfigResult } | null = null;

/** The room's keys from its environment (`room.env`/`lobby.env`), parsed once per distinct value. */
export function readAuthConfig(env: Record<string, unknown>): ConfigResult {
  const raw = {
    jwks: env.CROSSTALK_JWKS,
    secret: env.CROSSTALK_HS256_SECRET,
    issuer: env.CROSSTALK_ISSUER,
    dev: env.CROSSTALK_DEV,
  };
  const key = JSON.stringify(raw);
  if (cached?.key !== key) cached = { key, result: parseConfig(raw) };
  return cached.result;
}

function parseConfig(raw: { jwks: unknown; secret: unknown; issuer: unknown; dev: unknown }): ConfigResult {
  const dev = raw.dev === true || raw.dev === 1 || raw.dev === "1" || raw.dev === "true";
  let jwks: JWTVerifyGetKey | null = null;
  if (raw.jwks !== undefined && raw.jwks !== "") {
    const parsed = parseJwks(raw.jwks);
    if (typeof parsed === "string") return { ok: false, problem: `CROSSTALK_JWKS: ${parsed}` };
    jwks = createLocalJWKSet(parsed);
  }
  let secret: Uint8Array | null = null;
  if (raw.secret !== undefined && raw.secret !== "") {
    const text = String(raw.secret);
    if (text.length < MIN_SECRET_LENGTH)
      return { ok: false, problem: `CROSSTALK_HS256_SECRET has fewer than ${MIN_SECRET_LENGTH} characters` };
    secret = new TextEncoder().encode(text);
  }
  if (!jwks && !secret)
    return {
      ok: false,
      problem:
        "no key configured: set CROSSTALK_JWKS (Ed25519 public keys, `npx crosstalk keygen`) or, for development, CROSSTALK_HS256_SECRET",
    };
  if (dev && !secret)
    return { ok: false, problem: "CROSSTALK_DEV needs CROSSTALK_HS256_SECRET: the dev endpoint mints HS256 tokens" };
  const issuer = typeof raw.issuer === "string" && raw.issuer !== "" ? raw.issuer : null;
  return { ok: true, config: { jwks, secret, issuer, dev } };
}

/** A JWKS of Ed25519 public keys with distinct kids, or what is wrong with it. */
function parseJwks(value: unknown): JSONWebKeySet | string {
  let set: unknown = value;
  if (typeof value === "string") {
    try {
      set = JSON.parse(value);
    } catch {
      return "not JSON";
    }
  }
  const keys = (set as { keys?: unknown })?.keys;
  if (!Array.isArray(keys) || keys.length === 0) return 'expected {"keys": [...]} with at least one key';
  const kids = new Set<string>();
  for (const k of keys as Record<string, unknown>[]) {
    if (k?.kty !== "OKP" || k.crv !== "Ed25519" || typeof k.x !== "string") return "every key must be Ed25519 (OKP)";
    if ("d" in k) return "a key holds its private part (d): give the room public keys only";
    if (typeof k.kid !== "string" || k.kid === "") return "every key needs a kid";
    if (kids.has(k.kid)) return `two keys share kid ${k.kid}`;
    kids.add(k.kid);
  }
  return { keys: keys as JSONWebKeySet["keys"] };
}

const refuse = (kind: Refusal["kind"], message: string): Verdict => ({ ok: false, refusal: { kind, message } });

/**
 * Verifies `token` for `team`'s room: signature (EdDSA by kid, or HS256), audience
 * `crosstalk:<team>`, expiry, issuer, and the claims that make the identity.
 */
export async function verifyToken(
  token: string | null | undefined,
  options: { team: string; config: AuthConfig; now?: number },
): Promise<Verdict> {
  const { team, config } = options;
  if (!token) return refuse("unauthenticated", "no token: pass ?token= (or Authorization: Bearer for HTTP)");
  let alg: string | undefined;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    return refuse("unauthenticated", "malformed token");
  }
  const key = alg === "EdDSA" || alg === "Ed25519" ? config.jwks : alg === "HS256" ? config.secret : null;
  if (!key) return refuse("unauthenticated", `${alg ?? "unsigned"} tokens are not accepted by this room`);
  let payload: Record<string, unknown>;
  try {
    const verified = await jwtVerify(token, key as Uint8Array, {
      algorithms: [alg as string],
      audience: tokenAudience(team),
      requiredClaims: ["exp", "sub"],
      ...(config.issuer ? { issuer: config.issuer } : {}),
      ...(options.now !== undefined ? { currentDate: new Date(options.now) } : {}),
    });
    payload = verified.payload;
  } catch (error) {
    return refusalOf(error, team);
  }
  const claims = tokenClaimsSchema.safeParse(payload);
  if (!claims.success) {
    const field = claims.error.issues[0]?.path.join(".") || "claims";
    return refuse("unauthenticated", `invalid token claim ${field}`);
  }
  const { sub, role, perms, exp, iss } = claims.data;
  const identity = identitySchema.safeParse({
    agent: sub,
    role,
    expiresAt: exp * 1000,
    ...(perms ? { scope: perms } : {}),
    ...(iss ? { issuer: iss } : {}),
  });
  if (!identity.success || JSON.stringify(identity.data).length > MAX_IDENTITY_BYTES)
    return refuse("unauthenticated", "token claims too large");
  return { ok: true, identity: identity.data };
}

function refusalOf(error: unknown, team: string): Verdict {
  if (error instanceof errors.JWTExpired) return refuse("expired", "token expired");
  if (error instanceof errors.JWTClaimValidationFailed && error.claim === "aud")
    return refuse("forbidden", `token is not for team ${team}`);
  if (error instanceof errors.JWKSNoMatchingKey) return refuse("unauthenticated", "unknown key id (kid)");
  if (error instanceof errors.JWSSignatureVerificationFailed) return refuse("unauthenticated", "bad token signature");
  if (error instanceof errors.JOSEError) return refuse("unauthenticated", `invalid token: ${error.message}`);
  return refuse("unauthenticated", "invalid token");
}

/** The token a request carries: `?token=` (sockets, browsers) or `Authorization: Bearer` (HTTP). */
export function tokenOf(request: Request): string | null {
  const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.get("authorization") ?? "");
  return bearer?.[1] ?? new URL(request.url).searchParams.get("token");
}

let reported: string | null = null;

/**
 * Everything the edge decides about one request: the room's keys (a missing key refuses
 * all, logged once per problem), then the request's token.
 */
export async function authenticate(
  request: Request,
  options: { team: string; env: Record<string, unknown>; now?: number },
): Promise<Verdict> {
  const config = readAuthConfig(options.env);
  if (!config.ok) {
    if (reported !== config.problem) {
      reported = config.problem;
      console.error(`[crosstalk] refusing every connection: ${config.problem}`);
    }
    return refuse("unauthenticated", "the room has no usable key configured (see its log)");
  }
  return verifyToken(tokenOf(request), { team: options.team, config: config.config, now: options.now });
}

/** The close code and reason a socket refused for `refusal` gets (reason within the 123-byte limit). */
export function refusalClose(refusal: Refusal): { code: number; reason: string } {
  const base =
    refusal.kind === "expired"
      ? CLOSE_CODES.TokenExpired
      : refusal.kind === "forbidden"
        ? CLOSE_CODES.Forbidden
        : CLOSE_CODES.Unauthorized;
  let reason = `${base.reason}: ${refusal.message}`;
  while (new TextEncoder().encode(reason).length > MAX_CLOSE_REASON_BYTES) reason = reason.slice(0, -1);
  return { code: base.code, reason };
}

/** WebSocket close reasons are at most 123 bytes of UTF-8. */
const MAX_CLOSE_REASON_BYTES = 123;

/** The HTTP answer to a refused request: 401 with `WWW-Authenticate: Bearer`, or 403. */
export function refusalResponse(refusal: Refusal): Response {
  const error: ErrorBody = {
    code: refusal.kind === "forbidden" ? "FORBIDDEN" : "UNAUTHORIZED",
    message: refusal.message,
  };
  if (refusal.kind === "forbidden") return Response.json({ error }, { status: 403 });
  const challenge =
    refusal.kind === "expired" ? 'Bearer error="invalid_token", error_description="token expired"' : "Bearer";
  return Response.json({ error }, { status: 401, headers: { "WWW-Authenticate": challenge } });
}

/** `request` with the verified identity in {@link IDENTITY_HEADER}, and any client-sent copy gone. */
export function withIdentity(request: Request, identity: Identity): Request {
  const next = new Request(request);
  next.headers.delete(IDENTITY_HEADER);
  next.headers.set(IDENTITY_HEADER, encodeURIComponent(JSON.stringify(identity)));
  return next;
}

/** The identity the edge verified, from {@link IDENTITY_HEADER}; null when absent or unreadable. */
export function identityOf(headers: Headers): Identity | null {
  const value = headers.get(IDENTITY_HEADER);
  if (!value) return null;
  try {
    const parsed = identitySchema.safeParse(JSON.parse(decodeURIComponent(value)));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** True for `…/<team>/dev/token`, the development token endpoint's path. */
export const isDevTokenPath = (url: URL): boolean => /^\/parties\/[^/]+\/[^/]+\/dev\/token\/?$/.test(url.pathname);

/**
 * `GET …/<team>/dev/token?agent=…&role=…` in development mode: `{ token, expiresAt }`, an HS256
 * token for anyone who asks. Null when dev mode is off (or the keys are unusable): then the
 * path is like any other and needs a token.
 */
export async function devTokenResponse(
  request: Request,
  options: { team: string; env: Record<string, unknown> },
): Promise<Response | null> {
  const config = readAuthConfig(options.env);
  if (!config.ok || !config.config.dev || !config.config.secret) return null;
  const q = new URL(request.url).searchParams;
  const agent = nameSchema.safeParse(q.get("agent"));
  const role = nameSchema.safeParse(q.get("role") ?? "agent");
  if (!agent.success || !role.success) {
    const error: ErrorBody = { code: "INVALID_ARGUMENT", message: "expected ?agent=<name>&role=<name>" };
    return Response.json({ error }, { status: 400 });
  }
  const now = Date.now();
  const token = await signAgentToken({
    key: config.config.secret,
    alg: "HS256",
    team: options.team,
    agent: agent.data,
    role: role.data,
    ttl: DEV_TOKEN_TTL_S,
    now,
    ...(config.config.issuer ? { issuer: config.config.issuer } : {}),
  });
  const expiresAt = (Math.floor(now / 1000) + DEV_TOKEN_TTL_S) * 1000;
  return Response.json({ token, expiresAt }, { headers: { "cache-control": "no-store" } });
}
