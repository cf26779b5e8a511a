/**
 * The `crosstalk` command line (Node only). Two families of commands:
 * - running the room in the user's own project: `dev`, `deploy` (cli/room.ts);
 * - talking to a running room as one more agent: `tail`, `state`, `agents`, `call`,
 *   `publish`, `send`, `replay`, `trace` (cli/team.ts);
 * - tokens: `token`, `keygen` (cli/auth.ts);
 * - backup and restore of a team: `export`, `import` (cli/backup.ts);
 * - serving the team to an MCP host as one agent: `mcp` (cli/mcp.ts).
 *
 * `npm run build` compiles this folder to `dist/cli/`, which `bin/crosstalk.js` runs with
 * plain node; tests call {@link main} in-process with their own streams. The CLI reaches the
 * library only through `client/node.ts` (plus the protocol's schemas), like any Node user.
 *
 * Exit codes: 0 success, 1 runtime failure (the room refused, a call failed, a key is
 * missing, partykit is not installed), 2 usage error (bad arguments or options).
 */
import { Command, CommanderError, Option } from "commander";
import { intArg, nameArg } from "./args.ts";
import { addAuthCommands } from "./auth.ts";
import { addBackupCommands } from "./backup.ts";
import { describeError } from "./errors.ts";
import { useColor } from "./format.ts";
import type { CliIO } from "./io.ts";
import { addMcpCommand } from "./mcp.ts";
import { addRoomCommands, DEFAULT_PORT } from "./room.ts";
import { addTeamCommands } from "./team.ts";

export { describeError, RoomError, type RoomErrorCode } from "./errors.ts";
export type { CliIO, Output } from "./io.ts";

/** Where `crosstalk dev` listens by default, so the other commands find it without `--host`. */
const DEFAULT_HOST = `127.0.0.1:${DEFAULT_PORT}`;

/**
 * Runs the CLI with `argv` as the user typed it (no `node`/script prefix) and resolves with
 * the exit code. Never calls `process.exit`.
 */
export async function main(argv: string[], io: Partial<CliIO> = {}): Promise<number> {
  const ctx: CliIO = {
    stdout: io.stdout ?? process.stdout,
    stderr: io.stderr ?? process.stderr,
    env: io.env ?? process.env,
    cwd: io.cwd ?? process.cwd(),
    signal: io.signal,
    stdin: io.stdin ?? process.stdin,
  };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander has already printed help or the usage error.
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version") return 0;
      if (error.code === "commander.help") return error.exitCode === 0 ? 0 : 2;
      return 2;
    }
    ctx.stderr.write(`${describeError(error)}\n`);
    return 1;
  }
}

function buildProgram(ctx: CliIO): Command {
  const program = new Command("crosstalk")
    .description("Run a crosstalk team room, and inspect and drive it from the shell.")
    .configureOutput({
      writeOut: (s) => void ctx.stdout.write(s),
      writeErr: (s) => void ctx.stderr.write(s),
      getOutHelpWidth: () => ctx.stdout.columns ?? 100,
      getErrHelpWidth: () => ctx.stderr.columns ?? 100,
      getOutHasColors: () => useColor(ctx.stdout, ctx.env),
      getErrHasColors: () => useColor(ctx.stderr, ctx.env),
    })
    .exitOverride()
    // Global options go before the command, so `token --agent` is the token's own option.
    .enablePositionalOptions()
    .showHelpAfterError("(add --help for usage)")
    .addOption(
      new Option("--host <host>", "PartyKit host[:port] ($CROSSTALK_HOST)").default(
        ctx.env.CROSSTALK_HOST || DEFAULT_HOST,
      ),
    )
    .addOption(
      new Option(
        "--token <token>",
        "agent token, sent as the token query parameter ($CROSSTALK_TOKEN; else one is minted from $CROSSTALK_PRIVATE_JWK or $CROSSTALK_HS256_SECRET, else asked of a dev room)",
      ),
    )
    .addOption(
      new Option("--agent <id>", "agent id of this CLI (default: the token's, else cli-<random>)").argParser(
        nameArg("agent"),
      ),
    )
    .addOption(
      new Option("--role <role>", "role of this CLI (default: the token's, else cli)").argParser(nameArg("role")),
    )
    .addOption(
      new Option("--connect-timeout <ms>", "give up connecting after this long").default(10_000).argParser(intArg(1)),
    );
  addRoomCommands(program, ctx);
  addTeamCommands(program, ctx);
  addAuthCommands(program, ctx);
  addMcpCommand(program, ctx);
  addBackupCommands(program, ctx);
  return program;
}
