/**
 * The hibernating relay (`relay-hibernate.ts`) that stores each broadcast frame before it
 * sends it, one put per frame in arrival order: the least a room does whose subscribers must
 * never see an event that a crash could still take back. A third reference for the fan-out's
 * paced latency (`_vs_durable_relay` keys): its tail is the runtime's storage writes, which
 * the plain relay never waits for.
 */
import type * as Party from "partykit/server";
import HibernatingRelay from "./relay-hibernate.ts";

export default class DurableRelay extends HibernatingRelay {
  /** Frames are stored and sent in the order they arrived, each after the one before. */
  #chain: Promise<void> = Promise.resolve();
  #next = 0;

  protected override forward(message: string, to: unknown, sender: Party.Connection): void {
    if (to !== "*") return super.forward(message, to, sender);
    const key = `e|${String(++this.#next).padStart(10, "0")}`;
    this.#chain = this.#chain
      .then(() => this.room.storage.put(key, message))
      .then(() => this.room.broadcast(message, [sender.id]));
  }
}
