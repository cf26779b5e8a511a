/**
 * The CLI's own failures and how any failure reads on stderr. Usage errors never get here:
 * commander prints those itself and `main` exits 2.
 */
import { CrosstalkError } from "../client/node.ts";
import { printable } from "./format.ts";

/** A runtime failure with a message for the user (a missing key, nothing traced): exit 1, no code prefix. */
export class CliFailure extends Error {}

/**
 * Why `crosstalk dev` or `crosstalk deploy` could not run the room. Each code names what the
 * user does next:
 * - `PARTYKIT_MISSING`: install partykit in the project (the message has the command).
 * - `PORT_IN_USE`: something already listens on the port; pick another with `--port`.
 * - `ROOM_NOT_READY`: partykit started but the room never answered (its output is above).
 * - `PARTYKIT_FAILED`: partykit exited with an error of its own (its output is above).
 * - `NO_PROJECT_NAME`: deploy needs `--name` (package.json has no usable name).
 */
export type RoomErrorCode =
  | "PARTYKIT_MISSING"
  | "PORT_IN_USE"
  | "ROOM_NOT_READY"
  | "PARTYKIT_FAILED"
  | "NO_PROJECT_NAME";

/** A failure of the room commands, printed as `CODE: message` like the library's errors: exit 1. */
export class RoomError extends Error {
  override readonly name = "RoomError";
  constructor(
    readonly code: RoomErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** How a failure reads on stderr: `CODE: message` for coded errors, escaped for the terminal. */
export function describeError(error: unknown): string {
  if (error instanceof CrosstalkError || error instanceof RoomError)
    return `${error.code}: ${printable(error.message)}`;
  if (error instanceof CliFailure) return printable(error.message);
  if (error instanceof Error) return `error: ${printable(error.message)}`;
  return `error: ${printable(String(error))}`;
}
