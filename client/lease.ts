/**
 * A lease held by this agent (see `party/leases.ts`). It renews itself at a third of its TTL
 * while held (unless `autoRenew: false`); when a renewal is refused, or the TTL passes without
 * one reaching the room, the lease is lost and `lost` resolves — stop the guarded work then.
 */
import { CrosstalkError, type ReplyOf } from "../protocol/index.ts";
import type { Requests } from "./requests.ts";

export type LeaseOptions = {
  /** How long the lease lasts without renewal (default 10 s). */
  ttlMs?: number;
  /** Renew automatically while held (default true). */
  autoRenew?: boolean;
};

type Granted = ReplyOf<"lease.acquire">;

export class Lease {
  readonly name: string;
  /** Grows with every grant of this name: a fencing token for external systems. */
  token: number;
  /** Room clock (ms) until which the lease is held, as of the last grant. */
  expiresAt: number;
  held = true;
  /** Resolves with the reason once the lease is lost (expired, refused, released, closed). */
  readonly lost: Promise<string>;
  #markLost!: (reason: string) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #expiry: ReturnType<typeof setTimeout> | undefined;

  constructor(
    granted: Granted,
    private readonly requests: Requests,
    private readonly ttlMs: number,
    autoRenew: boolean,
    private readonly forget: (lease: Lease) => void,
    /** The room's clock as this agent knows it. */
    private readonly now: () => number,
  ) {
    this.name = granted.name;
    this.token = granted.token;
    this.expiresAt = granted.expiresAt;
    this.lost = new Promise((resolve) => {
      this.#markLost = resolve;
    });
    this.#watchExpiry();
    if (autoRenew) this.#schedule();
  }

  /**
   * The holder's own clock decides too: once `expiresAt` passes without a renewal reaching
   * the room, the lease is lost — also when the network is gone and the room cannot say so.
   */
  #watchExpiry(): void {
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(
      () => {
        if (!this.held) return;
        if (this.now() >= this.expiresAt) this.markLost("expired");
        else this.#watchExpiry();
      },
      Math.max(1, this.expiresAt - this.now()),
    );
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        this.renew().catch(() => {
          // Refused: already marked lost. Offline: retry until #watchExpiry ends it.
          if (this.held) this.#schedule();
        });
      },
      Math.max(10, this.ttlMs / 3),
    );
  }

  /** Extends the lease by its TTL. Fails with CONFLICT (and the lease is lost) if it was lost. */
  async renew(): Promise<void> {
    if (!this.held) throw new CrosstalkError("CONFLICT", `lease ${this.name} is no longer held`);
    try {
      // An answer after the lease's end is worth nothing: wait no longer than that.
      const granted = await this.requests.ask(
        { type: "lease.renew", name: this.name, token: this.token, ttlMs: this.ttlMs },
        Math.max(100, this.expiresAt - this.now()),
      );
      if (!this.held) {
        // It expired here while the renewal was on its way: give back what the room granted.
        await this.#giveBack();
        throw new CrosstalkError("CONFLICT", `lease ${this.name} expired before its renewal arrived`);
      }
      this.expiresAt = granted.expiresAt;
      this.#watchExpiry();
      if (this.#timer !== undefined) this.#schedule();
    } catch (error) {
      if (error instanceof CrosstalkError && error.code === "CONFLICT") this.markLost("refused");
      throw error;
    }
  }

  async release(): Promise<void> {
    if (!this.held) return;
    this.markLost("released");
    await this.#giveBack();
  }

  #giveBack(): Promise<unknown> {
    return this.requests.ask({ type: "lease.release", name: this.name, token: this.token }).catch(() => {});
  }

  /** @internal The room said so, or the team closed. */
  markLost(reason: string): void {
    if (!this.held) return;
    this.held = false;
    clearTimeout(this.#timer);
    clearTimeout(this.#expiry);
    this.forget(this);
    this.#markLost(reason);
  }
}
