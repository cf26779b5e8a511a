/**
 * Writing an agent token: the one place that knows which claims a token carries, used by
 * `crosstalk/node`'s `mintToken` (and the CLI's `token` command) and by the room's
 * development token endpoint. Reading one is the room's job (`party/identity.ts`).
 *
 * Not re-exported from `protocol/index.ts`: it pulls in jose, which the agent library itself
 * does not need. Isomorphic all the same (jose runs on WebCrypto everywhere).
 */
import { type CryptoKey, type JWK, SignJWT } from "jose";
import { CrosstalkError } from "./errors.ts";
import { tokenAudience } from "./identity.ts";
import { nameSchema } from "./names.ts";

/** The algorithms a room accepts: EdDSA (Ed25519) in production, HS256 for development. */
export type TokenAlg = "EdDSA" | "HS256";

export type SignOptions = {
  /** The signing key: an HS256 secret (bytes), or an Ed25519 private key. */
  key: Uint8Array | CryptoKey | JWK;
  alg: TokenAlg;
  /** The key id the room picks the public key by (`CROSSTALK_JWKS`); required for EdDSA. */
  kid?: string;
  team: string;
  agent: string;
  role: string;
  /** Narrows the role's permissions for this token (permission patterns, passed through). */
  perms?: readonly string[];
  /** Lifetime: seconds, or a duration like `90s`, `15m`, `12h`, `7d`. */
  ttl: number | string;
  issuer?: string;
  /** The clock (ms since the epoch), for tests. */
  now?: number;
};

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `15m` → 900; a plain number is seconds. Typed error for anything else. */
export function ttlSeconds(ttl: number | string): number {
  const match = typeof ttl === "string" ? /^(\d+)\s*([smhd]?)$/.exec(ttl.trim()) : null;
  const seconds = typeof ttl === "number" ? ttl : match ? Number(match[1]) * (UNITS[match[2] || "s"] ?? 1) : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1)
    throw new CrosstalkError("INVALID_ARGUMENT", `ttl must be a positive number of seconds or like 15m, 12h, 7d`);
  return seconds;
}

/** Signs a token for `agent` in `role` of `team`'s room. */
export async function signAgentToken(options: SignOptions): Promise<string> {
  for (const [field, value] of [
    ["team", options.team],
    ["agent", options.agent],
    ["role", options.role],
  ] as const) {
    if (!nameSchema.safeParse(value).success)
      throw new CrosstalkError("INVALID_ARGUMENT", `invalid ${field}: ${JSON.stringify(value)}`);
  }
  if (options.alg === "EdDSA" && !options.kid)
    throw new CrosstalkError("INVALID_ARGUMENT", "an EdDSA token needs the kid of its key (CROSSTALK_JWKS)");
  const iat = Math.floor((options.now ?? Date.now()) / 1000);
  const claims: Record<string, unknown> = { role: options.role };
  if (options.perms) claims.perms = [...options.perms];
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg, typ: "JWT", ...(options.kid ? { kid: options.kid } : {}) })
    .setSubject(options.agent)
    .setAudience(tokenAudience(options.team))
    .setIssuedAt(iat)
    .setExpirationTime(iat + ttlSeconds(options.ttl));
  if (options.issuer) jwt = jwt.setIssuer(options.issuer);
  return jwt.sign(options.key);
}
