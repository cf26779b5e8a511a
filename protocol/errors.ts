/**
 * The one error class of the runtime. `code` is a key of the protocol's error table, so a
 * caller can switch on it; `retryable` says whether the same request may succeed later.
 * Here rather than in `client/` because protocol helpers that refuse bad input (entity
 * keys, trace items) throw it too, and one class keeps `instanceof` true everywhere.
 */
import { ERROR_CODES, type ErrorBody, type ErrorCode } from "./codes.ts";

export class CrosstalkError extends Error {
  override readonly name = "CrosstalkError";
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.code = code;
    this.details = details;
  }

  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  static from(body: ErrorBody): CrosstalkError {
    return new CrosstalkError(body.code, body.message, body.details);
  }

  /** The wire form: code, message and JSON details (never a stack). */
  toBody(): ErrorBody {
    if (this.details === undefined) return { code: this.code, message: this.message };
    try {
      return { code: this.code, message: this.message, details: JSON.parse(JSON.stringify(this.details)) };
    } catch {
      return { code: this.code, message: this.message };
    }
  }
}

export const isCrosstalkError = (e: unknown): e is CrosstalkError => e instanceof CrosstalkError;
