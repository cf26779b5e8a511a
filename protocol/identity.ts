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
