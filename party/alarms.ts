/**
 * The room's one alarm schedule: token expiry, lease expiry and consumer-group ack deadlines
 * are named deadlines here, and the host is asked for a single wake-up at the earliest one
 * (a Durable Object's `storage.setAlarm`, which PartyKit delivers to `onAlarm`).
 *
 * Why not `setTimeout`: a pending timer keeps the object in memory, so a room holding a
 * one-hour token timer would never hibernate. A storage alarm does not keep it awake; it wakes
 * it. The schedule itself is memory: after a wake each module re-registers its deadlines
 * from what it stored (`TeamRoom.resume`), before the alarm's handler runs.
 *
 * Hosts without alarms (in-process rooms over `MemoryStorage`) get one `setTimeout` instead.
 */

/** The part of a host's storage that schedules its wake-up; PartyKit's `room.storage` has it. */
export interface AlarmHost {
  setAlarm?(at: number): Promise<void>;
}

/** setTimeout's longest delay (about 24.8 days); a later deadline re-arms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Deadline = { at: number; fire: () => void };

export class Alarms {
  readonly #due = new Map<string, Deadline>();
  /** When the host's alarm is set for (null: not set by this instance). */
  #armed: number | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly host: AlarmHost,
    private readonly now: () => number,
  ) {}

  /** Runs `fire` at room time `at` (replacing `key`'s earlier deadline). */
  at(key: string, at: number, fire: () => void): void {
    this.#due.set(key, { at, fire });
    if (this.#armed === null || at < this.#armed) this.#arm(at);
  }

  cancel(key: string): void {
    // The host's alarm stays set: firing with nothing due only re-arms for the next deadline.
    // The fallback timer goes with the last deadline, so an in-process room holds no timer.
    this.#due.delete(key);
    if (this.#due.size === 0 && !this.host.setAlarm) {
      clearTimeout(this.#timer);
      this.#armed = null;
    }
  }

  get size(): number {
    return this.#due.size;
  }

  /** The host's alarm went off (or the fallback timer): runs what is due, arms for the next. */
  fire(): void {
    this.#armed = null;
    clearTimeout(this.#timer);
    const now = this.now();
    for (const [key, deadline] of [...this.#due]) {
      if (deadline.at > now) continue;
      this.#due.delete(key);
      try {
        deadline.fire();
      } catch (error) {
        console.error(`[crosstalk] deadline ${key} failed`, error);
      }
    }
    let next: number | null = null;
    for (const { at } of this.#due.values()) if (next === null || at < next) next = at;
    if (next !== null) this.#arm(next);
  }

  #arm(at: number): void {
    this.#armed = at;
    if (this.host.setAlarm) {
      this.host.setAlarm(at).catch((error: unknown) => console.error("[crosstalk] alarm not set", error));
      return;
    }
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.fire(), Math.min(Math.max(0, at - this.now()), MAX_TIMER_MS));
  }
}
