/**
 * Tokens from the shell: `crosstalk token` mints one, `crosstalk keygen` makes an Ed25519
 * key pair, and {@link credentials} decides who the team commands connect as.
 *
 * Signing keys come from the environment (or flags): `CROSSTALK_PRIVATE_JWK` (an Ed25519
 * private JWK, from `keygen`; production) or `CROSSTALK_HS256_SECRET` (the room's shared
 * secret; development).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { decodeJwt } from "jose";
import { generateKeyPair, type JWK, mintToken, ttlSeconds } from "../client/node.ts";
import { tokenClaimsSchema } from "../protocol/index.ts";
import { nameArg } from "./args.ts";
import { CliFailure } from "./errors.ts";
import { printJson } from "./format.ts";
import type { CliIO } from "./io.ts";

/** The global options that say who the CLI is. */
export type Who = { token?: string; agent?: string; role?: string };

type SigningKey = { secret: string } | { privateJwk: JWK };

/** The signing key from `--secret` / `--private-jwk <file>`, else the environment; null when none. */
function signingKey(env: CliIO["env"], flags: { secret?: string; privateJwk?: string } = {}): SigningKey | null {
  const jwkText = flags.privateJwk !== undefined ? readKeyFile(flags.privateJwk) : env.CROSSTALK_PRIVATE_JWK;
  if (jwkText) {
    try {
      return { privateJwk: JSON.parse(jwkText) as JWK };
    } catch {
      throw new CliFailure("the private key (CROSSTALK_PRIVATE_JWK or --private-jwk) is not JSON");
    }
  }
  const secret = flags.secret ?? env.CROSSTALK_HS256_SECRET;
  return secret ? { secret } : null;
}

function readKeyFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new CliFailure(`cannot read ${path}: ${(error as Error).message}`);
  }
}

/**
 * Who a team command connects as, and with which token:
 * 1. `--token` / `CROSSTALK_TOKEN`: agent and role default to the token's `sub` and `role`
 *    (a token that is not a JWT is passed on as it is, for rooms with their own scheme);
 * 2. else a signing key in the environment: a 15-minute token minted for `--agent` (default
 *    `cli-<random>`) in `--role` (default `cli`);
 * 3. else the room's development token endpoint, if it has one; a refusal if not.
 */
export async function credentials(
  who: Who,
  ctx: CliIO,
  where: { host: string; team: string },
): Promise<{ agent: string; role: string; token: () => Promise<string> }> {
  const { host, team } = where;
  const given = who.token ?? (ctx.env.CROSSTALK_TOKEN || undefined);
  if (given !== undefined) {
    const claims = claimsOf(given);
    const agent = who.agent ?? claims?.sub ?? randomAgent();
    return { agent, role: who.role ?? claims?.role ?? "cli", token: async () => given };
  }
  const agent = who.agent ?? randomAgent();
  const role = who.role ?? "cli";
  const key = signingKey(ctx.env);
  if (key) return { agent, role, token: () => mintToken({ ...key, team, agent, role, ttl: "15m" }) };
  return { agent, role, token: () => devToken(host, team, { agent, role }) };
}

/**
 * A token from the room's development endpoint (`CROSSTALK_DEV=1`: `npm start`, `crosstalk
 * dev`), or "" when it has none: then the room refuses with UNAUTHORIZED, which is the answer.
 */
async function devToken(host: string, team: string, who: { agent: string; role: string }): Promise<string> {
  const scheme = /^(localhost|127\.|\[::1\])/.test(host) ? "http" : "https";
  const q = new URLSearchParams(who);
  try {
    const res = await fetch(`${scheme}://${host}/parties/main/${team}/dev/token?${q}`, {
      signal: AbortSignal.timeout(5_000),
    });
    if (!res.ok) return "";
    const body = (await res.json()) as { token?: unknown };
    return typeof body.token === "string" ? body.token : "";
  } catch {
    return "";
  }
}

const randomAgent = () => `cli-${randomBytes(4).toString("hex")}`;

function claimsOf(token: string): { sub: string; role: string } | null {
  try {
    const parsed = tokenClaimsSchema.pick({ sub: true, role: true }).safeParse(decodeJwt(token));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

const collectPerms = (value: string, previous: string[] = []): string[] => [
  ...previous,
  ...value
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean),
];

const ttlArg = (value: string): string => {
  try {
    ttlSeconds(value);
  } catch {
    throw new InvalidArgumentError("expected seconds or a duration like 90s, 15m, 12h, 7d");
  }
  return value;
};

type TokenOptions = {
  team: string;
  agent: string;
  role: string;
  ttl: string;
  perms?: string[];
  issuer?: string;
  secret?: string;
  privateJwk?: string;
};

/** Adds `token` and `keygen` to `program`. */
export function addAuthCommands(program: Command, ctx: CliIO): void {
  program
    .command("token")
    .description(
      "Mint an agent token and print it. Key: --private-jwk <file> or $CROSSTALK_PRIVATE_JWK (EdDSA), else --secret or $CROSSTALK_HS256_SECRET (HS256).",
    )
    .requiredOption("--team <team>", "the team whose room admits it", nameArg("team"))
    .requiredOption("--agent <id>", "the agent id (sub)", nameArg("agent"))
    .requiredOption("--role <role>", "the agent's role", nameArg("role"))
    .option("--ttl <duration>", "lifetime: seconds or 90s, 15m, 12h, 7d", ttlArg, "15m")
    .option("--perms <patterns>", "narrow the role's permissions (comma-separated; repeatable)", collectPerms)
    .option("--issuer <iss>", "the iss claim")
    .addOption(new Option("--secret <secret>", "HS256 secret (default $CROSSTALK_HS256_SECRET)"))
    .addOption(new Option("--private-jwk <file>", "Ed25519 private JWK file (default $CROSSTALK_PRIVATE_JWK)"))
    .action(async (opts: TokenOptions) => {
      const key = signingKey(ctx.env, opts);
      if (!key)
        throw new CliFailure(
          "no signing key: set CROSSTALK_PRIVATE_JWK (from `crosstalk keygen`) or CROSSTALK_HS256_SECRET, or pass --private-jwk / --secret",
        );
      const token = await mintToken({
        ...key,
        team: opts.team,
        agent: opts.agent,
        role: opts.role,
        ttl: opts.ttl,
        ...(opts.perms ? { perms: opts.perms } : {}),
        ...(opts.issuer ? { issuer: opts.issuer } : {}),
      });
      ctx.stdout.write(`${token}\n`);
    });

  program
    .command("keygen")
    .description("Make an Ed25519 signing key pair: the private key for whoever mints tokens, the JWKS for the room.")
    .option("--kid <kid>", "key id (default: today's date and a random suffix)", nameArg("kid"))
    .option("--json", "print {kid, privateJwk, publicJwk, jwks} as JSON")
    .action(async (opts: { kid?: string; json?: boolean }) => {
      const pair = await generateKeyPair(opts.kid ? { kid: opts.kid } : {});
      if (opts.json) return printJson(ctx.stdout, pair);
      const quote = (value: unknown) => `'${JSON.stringify(value)}'`;
      ctx.stdout.write(
        [
          `# Key ${pair.kid}. The private key signs tokens: keep it secret (crosstalk token reads it from here).`,
          `CROSSTALK_PRIVATE_JWK=${quote(pair.privateJwk)}`,
          "# The public keys, for the room: npx partykit env add CROSSTALK_JWKS (deployed) or --var CROSSTALK_JWKS=… (dev).",
          '# To rotate, add the new key to the old one\'s "keys", sign with the new one, drop the old once its tokens expired.',
          `CROSSTALK_JWKS=${quote(pair.jwks)}`,
          "",
        ].join("\n"),
      );
    });
}
