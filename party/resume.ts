/**
 * Sessions across a hibernation. A hibernating host (a Durable Object with hibernatable
 * WebSockets: PartyKit `hibernate: true`, partyserver) drops the room's object when it idles
 * but keeps its sockets open; the next message or alarm builds a fresh room that knows none
 * of them. What each socket needs to carry on is kept in two places:
 *
 * - its attachment (`Socket.setState`, at most 2,048 bytes together with the host's own
 *   fields): who it is — the identity the edge verified from its token
 *   ({@link SessionIdentity}) — and the key of its record below. Written once, at connect.
 * - storage `sock|<key>` → {@link Registrations}: what it set up since — the documents it
 *   syncs, the methods it serves, its status, its feeds and its consumer groups. Checked after
 *   each of its frames and written only when one of these changed (rare: at setup), deleted
 *   when the session ends.
 *
 * On a wake the host hands every open socket to {@link Resumes.resume}: each session is
 * rebuilt as it was (no welcome, no roster announcement), re-subscribed to its documents,
 * its feeds reopened from the stream's head (the room hibernates only when idle, so every
 * event up to it was sent) and its groups rejoined (leases are in the group's record,
 * `consumers.ts`). A socket that carries nothing usable is closed with 1012 (service restart),
 * and its client reconnects as after any restart.
 */
import type { ClientFrameType, MethodInfo } from "../protocol/index.ts";
import type { Admission, SessionIdentity } from "./admission.ts";
import type { Consumers, JoinFrame } from "./consumers.ts";
import type { DocHub } from "./docs.ts";
import type { Feeds } from "./feeds.ts";
import { keys } from "./keys.ts";
import type { Router } from "./rpc.ts";
import type { Session, Socket } from "./session.ts";
import type { KvStorage } from "./storage.ts";

/**
 * Frames that never change a session's {@link Registrations} (the hot ones: calls, their
 * answers, publishes, acks): the room skips {@link Resumes.changed} after them, which costs
 * a `JSON.stringify` of everything the session set up.
 */
export const SETS_UP_NOTHING: ReadonlySet<string> = new Set<ClientFrameType>([
  "rpc.call",
  "rpc.result",
  "rpc.progress",
  "rpc.cancel",
  "rpc.send",
  "rpc.message.ack",
  "publish",
  "history",
  "consumer.get",
  "consumer.ack",
  "consumers.list",
  "group.ack",
  "group.nak",
  "trace.get",
  "policy.get",
  "ping",
]);

/** What a socket's attachment holds. `v` versions the shape. */
type Attachment = { v: 1; key: string; who: SessionIdentity };

export type Registrations = {
  docs: string[];
  methods: string[];
  maxInFlight?: number;
  info?: Readonly<Record<string, MethodInfo>>;
  status: Session["status"];
  feeds: { feed: string; stream: string; pattern: string }[];
  groups: JoinFrame[];
};

/** The attachment's share of the host's 2,048 bytes (PartyKit adds the socket's id and URL, token included). */
const MAX_ATTACHMENT_CHARS = 1024;

export type ResumeOptions = {
  team: string;
  storage: KvStorage;
  admission: Admission;
  hub: DocHub;
  feeds: Feeds;
  consumers: Consumers;
  router: Router;
};

type Saved = { key: string; signature: string; info: Registrations["info"] };

export class Resumes {
  readonly #saved = new WeakMap<Session, Saved>();

  constructor(private readonly options: ResumeOptions) {}

  /** A new session: its socket carries who it is. Hosts that never hibernate have no `setState`. */
  attach(session: Session): void {
    if (!session.socket.setState) return;
    const attachment: Attachment = {
      v: 1,
      key: crypto.randomUUID().slice(0, 13),
      who: this.options.admission.identityOf(session),
    };
    // Past the budget (a huge scope) the session still works; it just does not survive a wake.
    if (JSON.stringify(attachment).length > MAX_ATTACHMENT_CHARS) return;
    try {
      session.socket.setState(attachment);
    } catch (error) {
      console.error(`[crosstalk ${this.options.team}] ${session.agent}'s socket cannot carry its session`, error);
      return;
    }
    this.#saved.set(session, { key: attachment.key, signature: "", info: undefined });
  }

  /** After a frame of `session`: stores its registrations if they changed. */
  changed(session: Session): void {
    const saved = this.#saved.get(session);
    if (!saved || session.closed) return;
    const { info, ...rest } = this.#registrations(session);
    const signature = JSON.stringify(rest);
    if (signature === saved.signature && info === saved.info) return;
    saved.signature = signature;
    saved.info = info;
    this.options.storage
      .put({ [keys.socket(saved.key)]: { ...rest, ...(info ? { info } : {}) } })
      .catch((error: unknown) => console.error(`[crosstalk ${this.options.team}] registrations not stored`, error));
  }

  /** The session ended: its record goes. */
  forget(session: Session): void {
    const saved = this.#saved.get(session);
    if (!saved) return;
    this.#saved.delete(session);
    this.options.storage
      .delete([keys.socket(saved.key)])
      .catch((error: unknown) => console.error(`[crosstalk ${this.options.team}] registrations not deleted`, error));
  }

  #registrations(session: Session): Registrations {
    const maxInFlight = this.options.router.maxInFlightOf(session);
    return {
      docs: [...session.docs],
      methods: session.methods,
      ...(maxInFlight !== undefined ? { maxInFlight } : {}),
      ...(session.methodInfo ? { info: session.methodInfo } : {}),
      status: session.status,
      feeds: this.options.feeds.opened(session),
      groups: this.options.consumers.joined(session),
    };
  }

  /**
   * The room woke with `sockets` still open: rebuilds each one's session and what it had set
   * up; records of sockets that are gone (the room restarted, dropping them) are deleted.
   * Returns how many sessions came back.
   */
  async resume(sockets: Iterable<Socket>): Promise<number> {
    const { storage, admission } = this.options;
    const stored = await storage.list<Registrations>({ prefix: keys.socketPrefix });
    const live = new Set<string>();
    const rebuilt: Promise<void>[] = [];
    for (const socket of sockets) {
      const attachment = socket.state as Partial<Attachment> | null | undefined;
      const record = attachment?.key ? stored.get(keys.socket(attachment.key)) : undefined;
      const session = attachment?.v === 1 && attachment.who ? admission.resume(socket, attachment.who) : null;
      if (!session || !attachment?.key) {
        if (!session) socket.close(1012, "service restart: session not resumable");
        continue;
      }
      live.add(keys.socket(attachment.key));
      this.#saved.set(session, { key: attachment.key, signature: "", info: undefined });
      rebuilt.push(this.#restore(session, record));
    }
    await Promise.all(rebuilt);
    const orphans = [...stored.keys()].filter((key) => !live.has(key));
    if (orphans.length > 0) await storage.delete(orphans);
    return live.size;
  }

  async #restore(session: Session, record: Registrations | undefined): Promise<void> {
    if (!record) return;
    const { hub, feeds, consumers, router } = this.options;
    session.methods = record.methods;
    session.status = record.status;
    router.setMaxInFlight(session, record.maxInFlight);
    router.describe(session, record.info);
    try {
      await Promise.all(
        record.docs.map(async (name) => {
          const doc = await hub.open(name as Parameters<DocHub["open"]>[0]);
          if (session.closed) return;
          doc.subscribers.add(session);
          session.docs.add(name);
        }),
      );
      for (const feed of record.feeds) {
        const outcome = await feeds.open(session, { type: "feed.open", ref: "resume", ...feed, from: "end" });
        if (outcome && "afterwards" in outcome) outcome.afterwards?.();
      }
      for (const group of record.groups) await consumers.join(session, group, { resumed: true });
    } catch (error) {
      console.error(`[crosstalk ${this.options.team}] ${session.agent} not fully resumed`, error);
    }
    // What is stored now matches the session: no write until something changes.
    const saved = this.#saved.get(session);
    if (!saved) return;
    const { info, ...rest } = this.#registrations(session);
    saved.signature = JSON.stringify(rest);
    saved.info = info;
  }
}
