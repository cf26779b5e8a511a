/**
 * Who an agent is, once its signed token has been verified: what the edge hands the room
 * and what every session carries. The room stamps `agent` and `role` everywhere (event
 * `source`, roster, `updatedBy`, RPC caller, lease holder, inbox sender) from this only,
 * never from a frame or the connect URL. Kept small and serializable: hibernation stores it
 * in the connection's attachment, capped at 2,048 bytes on the platform.
 */
import { z } from "zod";
import { nameSchema } from "./names.ts";

/** The most a serialized identity may take (the attachment cap, with room to spare). */
export const MAX_IDENTITY_BYTES = 1536;

export const identitySchema = z.object({
  /** The agent id (the token's `sub`). */
  agent: nameSchema,
  role: nameSchema,
  /**
   * The token's own narrowing of its role's permissions (permission patterns, the policy's
   * grammar): the agent may do only what its role allows AND one of these allows.
   * Absent: the role's permissions as they are.
   */
  scope: z.array(z.string().min(1).max(300)).max(32).optional(),
  /** Expiry (ms since the epoch, from the token's `exp`); the room closes the socket then. */
  expiresAt: z.number().int().optional(),
  /** The token's issuer, for logs. */
  issuer: z.string().max(200).optional(),
});
export type Identity = z.infer<typeof identitySchema>;

/**
 * The `aud` claim a token for `team` carries. A token is good for one team's room only: a
 * token for `acme` presented to `globex` is refused (4403).
 */
export const tokenAudience = (team: string): string => `crosstalk:${team}`;

/**
 * The claims of an agent token (a JWT, EdDSA or HS256) beyond what the signature library
 * checks (`aud`, `exp`, `iss`): what becomes the {@link Identity}. `crosstalk/node`'s
 * `mintToken` writes them; the room reads them after verifying the signature.
 */
export const tokenClaimsSchema = z.object({
  /** The agent id. */
  sub: nameSchema,
  role: nameSchema,
  /** Optional narrowing of the role's permissions, passed through as `Identity.scope`. */
  perms: identitySchema.shape.scope,
  /** Expiry in seconds since the epoch (JWT convention); required: no token lives forever. */
  exp: z.number().int().positive(),
  iat: z.number().int().optional(),
  iss: z.string().max(200).optional(),
});
export type TokenClaims = z.infer<typeof tokenClaimsSchema>;
