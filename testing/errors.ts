/**
 * The one error class of the test kit. It is not a `CrosstalkError`: those codes belong to the
 * wire protocol's table, and a missing `partykit` or a room that never started is a problem
 * of the test setup, not of a request. `code` says which, so a test helper can switch on it.
 */

export type TestKitErrorCode =
  /** `partykit` is not installed where the kit looked (`npm install -D partykit`). */
  | "PARTYKIT_NOT_FOUND"
  /** `partykit dev` never answered, after every retry; the message holds its output. */
  | "ROOM_DID_NOT_START"
  /** An option or argument the kit cannot use (a missing config file, a malformed `--var`, a path). */
  | "INVALID_ARGUMENT";

export class TestKitError extends Error {
  override readonly name = "TestKitError";

  constructor(
    readonly code: TestKitErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
