/**
 * Fire-and-forget messages with durable inboxes. `rpc.send` is stored for each recipient
 * (`inbox|<agent>|<id>`) before the sender's `rpc.sent`, delivered at once to a live
 * recipient and on every (re)connect until the recipient acks it. Delivery is at least
 * once; the client skips ids it has already handled, so a handler runs once.
 *
 * A message to an agent id is always stored (it may be offline, or not have registered its
 * handler yet). A message to a role goes to every live agent of that role serving the
 * method; with none live it fails with NO_ROUTE (a role has no members while nobody is
 * connected).
 */
import type { ClientFrame, RoomFrame } from "../protocol/index.ts";
import type { RoomContext } from "./context.ts";
import type { Outcome, RoomModule } from "./handlers.ts";
import { keys } from "./keys.ts";
import { OutboxMarks } from "./marks.ts";
import type { Metrics } from "./metrics.ts";
import type { OtlpExport } from "./otlp.ts";
import type { Presence } from "./presence.ts";
import type { Session } from "./session.ts";
import { type KvStorage, putAll } from "./storage.ts";
import type { TraceLog } from "./trace.ts";

type SendFrame = Extract<ClientFrame, { type: "rpc.send" }>;
type Message = Extract<RoomFrame, { type: "rpc.message" }> & { expiresAt: number };

const prefix = keys.inboxPrefix;
/** Recently stored `<from>:<id>`s, so a resent message is not stored again after delivery. */
const RECENT_IDS = 10_000;

export class Inbox {
  readonly #recent = new Map<string, string[]>();
  /**
   * The highest outbox entry applied per sender instance (`protocol/frames.ts` `outbox`),
   * loaded on first use, the most recent instances of each agent only (`marks.ts`); `stored`
   * settles once that entry's message is durable.
   */
  readonly #marks: OutboxMarks<{ n: number; stored: Promise<unknown> }>;

  private readonly presence: Presence;
  private readonly storage: KvStorage;
  private readonly now: () => number;
  private readonly metrics: Metrics;
  private readonly traces: TraceLog;
  private readonly spans: OtlpExport | undefined;

  constructor(
    ctx: RoomContext,
    private readonly defaultTtlMs: number,
  ) {
    ({
      presence: this.presence,
      storage: this.storage,
      now: this.now,
      metrics: this.metrics,
      traces: this.traces,
      spans: this.spans,
    } = ctx);
    this.#marks = new OutboxMarks({
      storage: this.storage,
      prefix: (agent) => keys.outboxMessages(agent, ""),
      make: (n) => ({ n, stored: Promise.resolve() }),
    });
  }

  /** Stores the message for its recipients, delivers it to the live ones, and records it for `trace`. */
  async send(sender: Session, frame: SendFrame): Promise<Outcome<"rpc.send">> {
    const markKey = frame.outbox ? keys.outboxMessages(sender.agent, frame.outbox.instance) : null;
    const mark = frame.outbox ? await this.#marks.get(sender.agent, frame.outbox.instance) : null;
    if (frame.outbox && mark && frame.outbox.n <= mark.n) {
      // Applied before, however long ago: answered once that message is durable.
      await mark.stored.catch(() => {});
      return this.#sent(sender, frame, this.#recent.get(`${sender.agent}:${frame.id}`) ?? []);
    }
    const seen = this.#recent.get(`${sender.agent}:${frame.id}`);
    if (seen) return this.#sent(sender, frame, seen);
    let recipients: string[];
    if (typeof frame.to === "string") {
      // Stored whether or not the agent is live or serves the method yet: the client keeps a
      // message until a handler for its method is registered.
      recipients = [frame.to];
    } else {
      const role = frame.to.role;
      recipients = [...this.presence.sessions()]
        .filter((s) => s.role === role && s.methods.includes(frame.method))
        .map((s) => s.agent);
      if (recipients.length === 0) {
        this.metrics.noRoute.inc({ role });
        return { error: { code: "NO_ROUTE", message: `no live agent of role ${role} serves ${frame.method}` } };
      }
    }
    const ts = this.now();
    const message: Message = {
      type: "rpc.message",
      id: frame.id,
      from: sender.agent,
      method: frame.method,
      input: frame.input,
      ts,
      expiresAt: ts + (frame.ttlMs ?? this.defaultTtlMs),
      ...(frame.callId ? { callId: frame.callId } : {}),
      ...(frame.correlationId ? { correlationId: frame.correlationId } : {}),
      ...(frame.causationId ? { causationId: frame.causationId } : {}),
      ...(frame.traceparent ? { traceparent: frame.traceparent } : {}),
    };
    const entries: Record<string, unknown> = Object.fromEntries(recipients.map((r) => [prefix(r) + frame.id, message]));
    if (frame.outbox && mark && markKey) {
      // The mark moves first (a resend arriving meanwhile waits for `stored`) and is stored with the message.
      const previous = mark.n;
      entries[markKey] = frame.outbox.n;
      mark.n = frame.outbox.n;
      mark.stored = putAll(this.storage, entries);
      try {
        await mark.stored;
      } catch (error) {
        if (mark.n === frame.outbox.n) mark.n = previous;
        throw error;
      }
    } else await putAll(this.storage, entries);
    this.#remember(`${sender.agent}:${frame.id}`, recipients);
    for (const r of recipients) this.#deliver(this.presence.get(r), message);
    if (this.spans && frame.traceparent) {
      const attributes = { "crosstalk.message.id": frame.id, "crosstalk.to": recipients.join(",") };
      this.spans.add({
        name: `store ${frame.method}`,
        parent: frame.traceparent,
        startMs: ts,
        endMs: this.now(),
        attributes,
      });
    }
    return this.#sent(sender, frame, recipients);
  }

  #sent(sender: Session, frame: SendFrame, recipients: string[]): Outcome<"rpc.send"> {
    this.metrics.sends.inc({ method: frame.method });
    this.traces.add({
      kind: "message",
      id: frame.id,
      correlationId: frame.correlationId ?? frame.id,
      ...(frame.causationId ? { causationId: frame.causationId } : {}),
      detail: { from: sender.agent, to: recipients, method: frame.method },
      ts: this.now(),
    });
    return { reply: { recipients } };
  }

  /** On connect: hand over everything waiting for this agent, dropping what expired. */
  async flush(session: Session): Promise<void> {
    const waiting = await this.storage.list<Message>({ prefix: prefix(session.agent) });
    const expired: string[] = [];
    for (const [key, message] of [...waiting].sort((a, b) => a[1].ts - b[1].ts)) {
      if (message.expiresAt <= this.now()) expired.push(key);
      else this.#deliver(session, message);
    }
    if (expired.length > 0) await this.storage.delete(expired);
  }

  /**
   * Messages waiting for each agent (stored, not yet acked), for `/metrics`. A list of the
   * inboxes at scrape time: no count to keep right across restarts, and a growing inbox is
   * exactly what the scrape is for.
   */
  async depths(): Promise<Map<string, number>> {
    const base = prefix("");
    const out = new Map<string, number>();
    for (const key of (await this.storage.list({ prefix: base.slice(0, -1) })).keys()) {
      // `inbox|<agent>|<id>`: agent names have no `|` (nameSchema).
      const agent = key.slice(base.length - 1, key.indexOf("|", base.length - 1));
      out.set(agent, (out.get(agent) ?? 0) + 1);
    }
    return out;
  }

  async ack(session: Session, id: string): Promise<void> {
    await this.storage.delete([prefix(session.agent) + id]);
  }

  #deliver(session: Session | undefined, message: Message): void {
    if (!session) return;
    const { expiresAt: _, ...frame } = message;
    session.sendFrame(frame);
  }

  #remember(key: string, recipients: string[]): void {
    this.#recent.set(key, recipients);
    if (this.#recent.size > RECENT_IDS) this.#recent.delete(this.#recent.keys().next().value as string);
  }
}

export const inboxModule = (inbox: Inbox): RoomModule<"rpc.send" | "rpc.message.ack"> => ({
  frames: {
    "rpc.send": (session, frame) => inbox.send(session, frame),
    "rpc.message.ack": (session, frame) => inbox.ack(session, frame.id),
  },
});
