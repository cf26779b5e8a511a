/**
 * crosstalk for Node: the same client with the `ws` WebSocket (Node 20 has no global one).
 * Node-only extras (file persistence: `openFileStorage`, the CLI, minting tokens) join this
 * entry point, never the core.
 */
import { exportJWK, generateKeyPair as generateJoseKeyPair, importJWK, type JWK } from "jose";
import WebSocket from "ws";
import { CrosstalkError, randomBytes, toHex } from "../protocol/index.ts";
import { type SignOptions, signAgentToken, ttlSeconds } from "../protocol/token.ts";
import { type ConnectOptions, connect as connectCore, type Team } from "./team.ts";

export type { JWK } from "jose";
export { FileStorage, type FileStorageOptions, type FsyncPolicy, openFileStorage } from "./file-storage.ts";
export * from "./index.ts";
/** A token lifetime (`90s`, `15m`, `12h`, `7d`, or seconds) in seconds; INVALID_ARGUMENT otherwise. */
export { ttlSeconds };

/** `connect` with `ws` as the WebSocket unless one is given. */
export function connect(options: ConnectOptions): Promise<Team> {
  return connectCore({ WebSocket, ...options });
}

export type MintOptions = {
  /** An HS256 shared secret, the room's `CROSSTALK_HS256_SECRET` (development). */
  secret?: string | Uint8Array;
  /** An Ed25519 private key as a JWK (production); its public half is in the room's `CROSSTALK_JWKS`. */
  privateJwk?: JWK;
  /** The key id; defaults to `privateJwk.kid`. */
  kid?: string;
} & Pick<SignOptions, "team" | "agent" | "role" | "perms" | "ttl" | "issuer">;

/**
 * A signed token for `agent` in `role` of `team`'s room: EdDSA with `privateJwk`, or HS256
 * with `secret`. Give it to `connect({ token })`, the CLI's `--token` or HTTP's
 * `Authorization: Bearer`.
 */
export async function mintToken(options: MintOptions): Promise<string> {
  const { secret, privateJwk } = options;
  if ((secret === undefined) === (privateJwk === undefined))
    throw new CrosstalkError("INVALID_ARGUMENT", "mintToken needs exactly one of secret (HS256) or privateJwk (EdDSA)");
  ttlSeconds(options.ttl);
  const claims = {
    team: options.team,
    agent: options.agent,
    role: options.role,
    ttl: options.ttl,
    ...(options.perms ? { perms: options.perms } : {}),
    ...(options.issuer ? { issuer: options.issuer } : {}),
  };
  if (secret !== undefined) {
    const key = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
    if (key.byteLength < 32) throw new CrosstalkError("INVALID_ARGUMENT", "an HS256 secret has at least 32 bytes");
    return signAgentToken({ ...claims, key, alg: "HS256" });
  }
  const jwk = privateJwk as JWK;
  const kid = options.kid ?? jwk.kid;
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.d !== "string")
    throw new CrosstalkError("INVALID_ARGUMENT", "privateJwk must be an Ed25519 private key (crosstalk keygen)");
  let key: Awaited<ReturnType<typeof importJWK>>;
  try {
    key = await importJWK({ ...jwk, alg: "EdDSA" }, "EdDSA");
  } catch (error) {
    throw new CrosstalkError("INVALID_ARGUMENT", `privateJwk: ${(error as Error).message}`);
  }
  return signAgentToken({ ...claims, key, alg: "EdDSA", ...(kid ? { kid } : {}) });
}

export type KeyPair = {
  kid: string;
  /** Keep secret: whoever holds it can sign tokens for every agent of every team using its JWKS. */
  privateJwk: JWK;
  publicJwk: JWK;
  /** `{ keys: [publicJwk] }`: the value of the room's `CROSSTALK_JWKS` (add to it when rotating). */
  jwks: { keys: JWK[] };
};

/** A new Ed25519 signing key pair. `kid` defaults to today's date plus a random suffix. */
export async function generateKeyPair(options: { kid?: string } = {}): Promise<KeyPair> {
  const kid = options.kid ?? `${new Date().toISOString().slice(0, 10)}-${toHex(randomBytes(3))}`;
  const { privateKey, publicKey } = await generateJoseKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const meta = { kid, alg: "EdDSA", use: "sig" };
  const publicJwk = { ...(await exportJWK(publicKey)), ...meta };
  const privateJwk = { ...(await exportJWK(privateKey)), ...meta };
  return { kid, privateJwk, publicJwk, jwks: { keys: [publicJwk] } };
}

/** A random HS256 secret (256 bits, base64url) for `CROSSTALK_HS256_SECRET` in development. */
export function generateSecret(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
}
