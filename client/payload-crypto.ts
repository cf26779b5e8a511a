/**
 * End-to-end encrypted payloads: an event's `data`, or a call's or message's `input`, sealed on
 * the sending client and opened on the receiving one, so the room, the platform, the history
 * view and the inboxes hold only ciphertext.
 * A sealed payload is `{ "$jwe": "<compact JWE>" }` (jose `CompactEncrypt`, `dir` +
 * `A256GCM`, the key chosen by `kid`); its protected header also binds the team, stream,
 * event id and type (`ctx`), checked on opening, so a ciphertext moved to another event,
 * stream or team does not open. `type`, `key` and `id` stay in the clear for routing,
 * permissions and dedupe. Keys reach agents outside the room (`connect({ encryption })`).
 *
 * Isomorphic (jose runs on WebCrypto in browsers, workers and Node). Not re-exported from
 * the package entry point except for its types; `events.ts` uses it, `test/encrypted-payloads.test.ts` exercises it.
 */
import { base64url, CompactEncrypt, compactDecrypt } from "jose";
import { CrosstalkError } from "../protocol/index.ts";

/** A 256-bit key: raw bytes, their base64url text, or an AES-GCM `CryptoKey`. */
export type PayloadKey = Uint8Array | string | CryptoKey;

export type EncryptionOptions = {
  /** Keys by id (`kid`); readers need every key their streams' events were sealed with (keep old ones after a rotation). */
  keys: Record<string, PayloadKey>;
  /** The key id new events of each stream are sealed with; a stream not named is published in the clear (unless `publish(…, { encrypt })`). */
  streams?: Record<string, string>;
  /**
   * The key id the `input` of calls and messages to each method is sealed with; a method not
   * named travels in the clear (unless `call`/`send(…, { encrypt })`). Outputs travel in the clear.
   */
  methods?: Record<string, string>;
};

/**
 * What a sealed payload is bound to (its protected header's `ctx`). For an event: its stream,
 * id and type. For a call or message input: `stream` is {@link CALL_INPUT} or
 * {@link MESSAGE_INPUT}, `id` the call's or message's id, `type` the method, and `from` the
 * sending agent (the room stamps who sent it; a mismatch does not open).
 */
export type PayloadContext = { team: string; stream: string; id: string; type: string; from?: string };

/** `stream` of the context of a call's input: no stream name can start with `@`. */
export const CALL_INPUT = "@call";
/** `stream` of the context of a message's input. */
export const MESSAGE_INPUT = "@message";

/** The field of a sealed payload. */
export const SEALED = "$jwe";

export type Sealed = { [SEALED]: string };

export function isSealed(value: unknown): value is Sealed {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.keys(value).length === 1 &&
    typeof (value as Record<string, unknown>)[SEALED] === "string"
  );
}

function keyOf(keys: Record<string, PayloadKey>, kid: string): Uint8Array | CryptoKey {
  const key = Object.hasOwn(keys, kid) ? keys[kid] : undefined;
  if (key === undefined) throw new CrosstalkError("DECRYPT_FAILED", `no payload key with id ${JSON.stringify(kid)}`);
  const bytes = typeof key === "string" ? base64url.decode(key) : key;
  if (bytes instanceof Uint8Array && bytes.byteLength !== 32)
    throw new CrosstalkError("INVALID_ARGUMENT", `payload key ${kid} must be 32 bytes (A256GCM)`);
  return bytes;
}

/**
 * The key id to seal a payload with: `encrypt` when given (false: none), else the key named
 * for `name` (a stream in `encryption.streams`, a method in `encryption.methods`), else none.
 */
export function keyIdFor(
  encrypt: string | false | undefined,
  byName: Record<string, string> | undefined,
  name: string,
): string | null {
  if (encrypt === false) return null;
  return encrypt ?? byName?.[name] ?? null;
}

/** Seals `value` (any JSON) with key `kid`, bound to `ctx`. */
export async function seal(
  keys: Record<string, PayloadKey>,
  kid: string,
  ctx: PayloadContext,
  value: unknown,
): Promise<Sealed> {
  const key = keyOf(keys, kid);
  const plaintext = new TextEncoder().encode(JSON.stringify(value ?? null));
  const jwe = await new CompactEncrypt(plaintext)
    .setProtectedHeader({ alg: "dir", enc: "A256GCM", kid, cty: "json", ctx })
    .encrypt(key);
  return { [SEALED]: jwe };
}

/**
 * Opens a sealed payload for the event `ctx` describes. Throws DECRYPT_FAILED for an unknown
 * key, a wrong key, a tampered header or ciphertext, or a header bound to something else.
 */
export async function open(keys: Record<string, PayloadKey>, ctx: PayloadContext, sealed: Sealed): Promise<unknown> {
  let result: Awaited<ReturnType<typeof compactDecrypt>>;
  try {
    result = await compactDecrypt(sealed[SEALED], (header) => keyOf(keys, String(header.kid)), {
      keyManagementAlgorithms: ["dir"],
      contentEncryptionAlgorithms: ["A256GCM"],
    });
  } catch (error) {
    if (error instanceof CrosstalkError) throw error;
    throw new CrosstalkError("DECRYPT_FAILED", `the payload of ${ctx.id} does not decrypt: ${String(error)}`);
  }
  const bound = result.protectedHeader.ctx as Partial<PayloadContext> | undefined;
  const fields = ["team", "stream", "id", "type", ...(ctx.from === undefined ? [] : ["from" as const])] as const;
  for (const field of fields) {
    if (bound?.[field] !== ctx[field]) {
      throw new CrosstalkError(
        "DECRYPT_FAILED",
        `the payload of ${ctx.id} was sealed for ${field} ${JSON.stringify(bound?.[field])}, not ${JSON.stringify(ctx[field])}`,
      );
    }
  }
  try {
    return JSON.parse(new TextDecoder().decode(result.plaintext));
  } catch {
    throw new CrosstalkError("DECRYPT_FAILED", `the payload of ${ctx.id} is not JSON`);
  }
}
