/**
 * Dead letters: an event a consumer gave up on goes to the stream `<stream>.dlq`, with why.
 * Written by the client (a plain or durable subscription whose handler kept failing) and by
 * the room (a consumer group's event past `maxDeliver`), so the record is built here once.
 */
import type { EventInput, Json, StoredEvent } from "./schemas.ts";

/** Suffix of a stream's dead-letter stream: `main` → `main.dlq`. */
export const DLQ_SUFFIX = ".dlq";

export type DeadLetterFailure = {
  /** The durable consumer, group or agent that gave up. */
  consumer: string;
  /** The last failure, as a message. */
  error: string;
  /** Deliveries tried (0: refused before any, e.g. the event fails its schema). */
  deliveries: number;
  /** zod issues when the event failed its schema. */
  issues?: Json;
};

/**
 * The dead letter for `event`: published to `stream` as `input`. The id is deterministic
 * (`dlq:<stream>:<consumer>:<seq>`), so the stream's dedupe stores it at most once however
 * often the failure is reported; it keeps the event's correlation id and names the event as
 * its cause.
 */
export function deadLetter(
  event: StoredEvent,
  failure: DeadLetterFailure,
): { stream: string; input: Omit<EventInput, "traceparent"> } {
  const { consumer, error, deliveries, issues } = failure;
  return {
    stream: event.stream + DLQ_SUFFIX,
    input: {
      id: `dlq:${event.stream}:${consumer}:${event.seq}`,
      type: event.type,
      data: {
        event,
        error,
        deliveries,
        stream: event.stream,
        seq: event.seq,
        consumer,
        ...(issues !== undefined ? { issues } : {}),
      },
      ...(event.correlationId ? { correlationId: event.correlationId } : {}),
      causationId: event.id,
    },
  };
}
