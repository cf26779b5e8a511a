/**
 * Stream sequencing: the room is the only writer of `log/<stream>` documents. A publish is
 * validated, deduplicated by event id, stamped (`seq`, `ts`, `source`), appended in one
 * transaction, and acknowledged only once the commit queue has stored it.
 */
import { appendEvents, eventAt, type LogSegments, logHead, logSegments, logTail } from "../client/log.ts";
import {
  type ClientFrame,
  type ErrorBody,
  type EventInput,
  logDoc,
  MAX_EVENT_BYTES,
  type StoredEvent,
} from "../client/protocol.ts";
import { type DocHub, type HubDoc, ROOM } from "./docs.ts";
import type { Session } from "./session.ts";

type StreamState = {
  readonly name: string;
  readonly doc: HubDoc;
  readonly segments: LogSegments;
  head: number;
  lastTs: number;
  /** Event id → where it was stored, for idempotent re-publish. */
  readonly ids: Map<string, { seq: number; ts: number }>;
};

type PublishFrame = Extract<ClientFrame, { type: "publish" }>;
type Ack = { id: string; seq: number; ts: number; duplicate: boolean };

/** JSON length is a cheap upper bound check first; bytes only matter near the limit. */
function eventBytes(event: EventInput): number {
  const json = JSON.stringify(event);
  return json.length * 3 <= MAX_EVENT_BYTES ? json.length : new TextEncoder().encode(json).byteLength;
}

export class Streams {
  readonly #streams = new Map<string, Promise<StreamState>>();

  constructor(
    private readonly hub: DocHub,
    private readonly now: () => number,
  ) {}

  #open(name: string): Promise<StreamState> {
    let stream = this.#streams.get(name);
    if (!stream) {
      stream = this.hub.open(logDoc(name)).then((doc) => {
        const segments = logSegments(doc.ydoc);
        const state: StreamState = { name, doc, segments, head: logHead(segments), lastTs: 0, ids: new Map() };
        for (let seq = logTail(segments); seq <= state.head; seq++) {
          const event = eventAt(segments, seq);
          if (event) {
            state.ids.set(event.id, { seq, ts: event.ts });
            state.lastTs = event.ts;
          }
        }
        return state;
      });
      stream.catch(() => this.#streams.delete(name));
      this.#streams.set(name, stream);
    }
    return stream;
  }

  /** Handles a publish frame; answers the session with `publish.ack` or `error`. */
  async publish(session: Session, frame: PublishFrame): Promise<void> {
    const refused = (error: ErrorBody) => session.sendFrame({ type: "error", ref: frame.ref, error });
    for (const event of frame.events) {
      if (eventBytes(event) > MAX_EVENT_BYTES) {
        return refused({
          code: "TOO_LARGE",
          message: `event ${event.id} is larger than ${MAX_EVENT_BYTES} bytes; nothing in this batch was appended`,
        });
      }
    }
    const stream = await this.#open(frame.stream);
    const results = this.append(stream, frame.events, session.agent);
    this.hub.afterCommit(stream.doc, () => session.sendFrame({ type: "publish.ack", ref: frame.ref, results }));
  }

  /** Appends a validated batch atomically (one transaction, contiguous seqs). Synchronous. */
  append(stream: StreamState, events: EventInput[], source: string): Ack[] {
    const results: Ack[] = [];
    const fresh: StoredEvent[] = [];
    const ts = Math.max(this.now(), stream.lastTs);
    for (const input of events) {
      const known = stream.ids.get(input.id);
      if (known) {
        results.push({ id: input.id, seq: known.seq, ts: known.ts, duplicate: true });
        continue;
      }
      const seq = stream.head + fresh.length + 1;
      const event: StoredEvent = { ...input, stream: stream.name, seq, ts, source };
      stream.ids.set(input.id, { seq, ts });
      fresh.push(event);
      results.push({ id: input.id, seq, ts, duplicate: false });
    }
    if (fresh.length > 0) {
      stream.doc.ydoc.transact(() => appendEvents(stream.segments, fresh), ROOM);
      stream.head += fresh.length;
      stream.lastTs = ts;
    }
    return results;
  }
}
