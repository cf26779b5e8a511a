/**
 * Filtered event feeds: how an agent allowed only some types of a stream reads them. A
 * stream's log document carries every type, so such an agent may not sync it
 * (`policy.ts`); instead the room pushes the events it may read, matching the feed's
 * pattern, in seq order (`feed.events`): first the history from `from` on (archive
 * included), then each append as it happens. Each event is checked against the session's
 * grants when it is sent, so a policy change applies from the next event on.
 *
 * Resume: a feed lives as long as its socket. The client opens it again after a reconnect
 * from the next seq it has not handled (`client/events.ts`); seqs it skips between two
 * events are types it does not receive.
 *
 * Simplest correct form: catching up pushes the whole backlog without flow control (a
 * client far behind buffers it), and each feed reads the stream on its own.
 */
import { type ClientFrameOf, MAX_HISTORY_PAGE, matchesPattern, type StoredEvent } from "../protocol/index.ts";
import type { Outcome, RoomModule } from "./handlers.ts";
import { canReadEvent } from "./policy.ts";
import type { Session } from "./session.ts";
import type { StreamState, Streams } from "./streams.ts";

/** A `feed.events` frame stays well under the 1 MB socket frame limit. */
const MAX_FEED_FRAME_CHARS = 400_000;

type Feed = {
  readonly session: Session;
  readonly id: string;
  readonly stream: StreamState;
  readonly pattern: string;
  /** The next seq to look at. */
  next: number;
  pumping: boolean;
  again: boolean;
  closed: boolean;
  readonly listener: () => void;
};

export class Feeds {
  readonly #bySession = new Map<Session, Map<string, Feed>>();

  constructor(private readonly streams: Streams) {}

  /** How many feeds `session` has open, and whether one is `id`. */
  count(session: Session): number {
    return this.#bySession.get(session)?.size ?? 0;
  }

  has(session: Session, id: string): boolean {
    return this.#bySession.get(session)?.has(id) ?? false;
  }

  /** The feeds `session` has open (id, stream, pattern): what it reopens after a wake. */
  opened(session: Session): { feed: string; stream: string; pattern: string }[] {
    return [...(this.#bySession.get(session)?.values() ?? [])].map((f) => ({
      feed: f.id,
      stream: f.stream.name,
      pattern: f.pattern,
    }));
  }

  /** Opens (or reopens) a feed; its events follow the `feed.started` answer. */
  async open(session: Session, frame: ClientFrameOf<"feed.open">): Promise<Outcome<"feed.open">> {
    this.close(session, frame.feed);
    const stream = await this.streams.open(frame.stream);
    const from =
      frame.fromTime !== undefined
        ? await this.#seqAt(stream, frame.fromTime)
        : frame.from === "end"
          ? stream.head + 1
          : frame.from;
    // Retention removed where the feed would start: say so, typed, rather than stall.
    const firstSeq = from <= stream.head ? await this.streams.firstKept(stream.name) : from;
    if (from < firstSeq) {
      return {
        error: {
          code: "EVENTS_REMOVED",
          message: `stream ${stream.name}: events before seq ${firstSeq} were removed by its retention`,
          details: { firstSeq },
        },
      };
    }
    if (session.closed) return;
    const feed: Feed = {
      session,
      id: frame.feed,
      stream,
      pattern: frame.pattern,
      next: from,
      pumping: false,
      again: false,
      closed: false,
      listener: () => void this.#pump(feed),
    };
    stream.listeners.add(feed.listener);
    let feeds = this.#bySession.get(session);
    if (!feeds) {
      feeds = new Map();
      this.#bySession.set(session, feeds);
    }
    feeds.set(feed.id, feed);
    return { reply: { feed: feed.id, from, head: stream.head }, afterwards: () => void this.#pump(feed) };
  }

  close(session: Session, id: string): void {
    const feeds = this.#bySession.get(session);
    const feed = feeds?.get(id);
    if (!feeds || !feed) return;
    feed.closed = true;
    feed.stream.listeners.delete(feed.listener);
    feeds.delete(id);
    if (feeds.size === 0) this.#bySession.delete(session);
  }

  /** The session ended: its feeds go with it. */
  gone(session: Session): void {
    for (const id of [...(this.#bySession.get(session)?.keys() ?? [])]) this.close(session, id);
  }

  /** Sends what the feed has not looked at yet, in seq order; one pump per feed at a time. */
  async #pump(feed: Feed): Promise<void> {
    if (feed.pumping) {
      feed.again = true;
      return;
    }
    feed.pumping = true;
    try {
      do {
        feed.again = false;
        while (!feed.closed && !feed.session.closed && feed.next <= feed.stream.head) {
          const page = await this.streams.read(feed.stream.name, feed.next, undefined, MAX_HISTORY_PAGE);
          const last = page.events.at(-1);
          if (!last || feed.closed) break;
          feed.next = last.seq + 1;
          this.#send(
            feed,
            page.events.filter((e) => matchesPattern(feed.pattern, e.type) && canReadEvent(feed.session, e)),
          );
        }
      } while (feed.again && !feed.closed);
    } catch (error) {
      console.error(`[crosstalk] feed ${feed.id} of ${feed.session.agent} on ${feed.stream.name} failed`, error);
    } finally {
      feed.pumping = false;
    }
  }

  #send(feed: Feed, events: StoredEvent[]): void {
    let batch: StoredEvent[] = [];
    let chars = 0;
    const flush = () => {
      if (batch.length > 0) feed.session.pushFrame({ type: "feed.events", feed: feed.id, events: batch });
      batch = [];
      chars = 0;
    };
    for (const event of events) {
      const size = JSON.stringify(event).length;
      if (chars + size > MAX_FEED_FRAME_CHARS) flush();
      batch.push(event);
      chars += size;
    }
    flush();
  }

  /** The first seq at or after room time `ts` (room timestamps never decrease along a stream). */
  async #seqAt(stream: StreamState, ts: number): Promise<number> {
    let lo = 1;
    let hi = stream.head + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const page = await this.streams.read(stream.name, mid, mid, 1);
      if ((page.events[0]?.ts ?? Number.POSITIVE_INFINITY) < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export const feedModule = (feeds: Feeds): RoomModule<"feed.open" | "feed.close"> => ({
  frames: {
    "feed.open": (session, frame) => feeds.open(session, frame),
    "feed.close": (session, frame) => feeds.close(session, frame.feed),
  },
});
