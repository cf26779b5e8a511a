/**
 * Every storage key the room writes, in one place. Components are joined with `|`, which
 * no agent id, role, namespace, stream or consumer name can contain (see `nameSchema`), so
 * one name's keys can never fall inside another name's range. Numbers are zero-padded so
 * keys sort in numeric order.
 */
export const pad = (n: number): string => n.toString().padStart(10, "0");

export const keys = {
  /** Yjs documents (`party/storage.ts`). */
  docMeta: (doc: string) => `doc|${doc}|meta`,
  docSnapPrefix: (doc: string, gen: number) => `doc|${doc}|snap|${pad(gen)}|`,
  docUpdatePrefix: (doc: string) => `doc|${doc}|u|`,
  docUpdate: (doc: string, n: number, part: number) => `doc|${doc}|u|${pad(n)}|${pad(part)}`,
  /** The agent that writes under each Yjs client id of a client-writable document (`party/docs.ts`). */
  yjsWriterPrefix: (doc: string) => `doc|${doc}|w|`,
  yjsWriter: (doc: string, client: number) => `doc|${doc}|w|${client}`,
  /** What the last rebase of a state document kept for offline deletes (`party/rebase-live.ts`): part count, parts. */
  docRebaseLive: (doc: string) => `doc|${doc}|live`,
  docRebaseLivePart: (doc: string, part: number) => `doc|${doc}|live|${pad(part)}`,
  /** Archived log segments and their id index (`party/streams.ts`). */
  archivePrefix: (stream: string, segment: number) => `arc|${stream}|${pad(segment)}|`,
  archiveIndexPrefix: (stream: string) => `arcidx|${stream}|`,
  /** One key per stream that ever had an event: the list of streams. */
  stream: (name: string) => `stream|${name}`,
  streamPrefix: "stream|",
  /** Durable consumer positions and consumer groups (`party/consumers.ts`). */
  consumer: (stream: string, name: string) => `cons|${stream}|${name}`,
  group: (stream: string, name: string) => `grp|${stream}|${name}`,
  /** Durable inboxes (`party/inbox.ts`); the message id comes last and may hold anything. */
  inboxPrefix: (agent: string) => `inbox|${agent}|`,
  /** Leases and the last fencing token of each name (`party/leases.ts`). */
  lease: (name: string) => `lease|${name}`,
  leaseToken: (name: string) => `leasetoken|${name}`,
  /**
   * The highest durable-outbox entry applied per agent instance (`protocol/frames.ts`
   * `outbox`): per stream (`party/streams.ts`) and for direct messages (`party/inbox.ts`).
   * The instance comes last: it is the client's and may hold anything.
   */
  outboxStream: (agent: string, stream: string, instance: string) => `outbox|s|${agent}|${stream}|${instance}`,
  outboxMessages: (agent: string, instance: string) => `outbox|m|${agent}|${instance}`,
  /** Stored results of idempotent calls (`party/rpc.ts`), per caller agent. */
  idempotent: (agent: string, key: string) => `idem|${agent}|${key}`,
  /**
   * A2A tasks (`party/a2a.ts`), per caller agent: the task record in parts, each update of its
   * stream (in parts), and which task a message id started (the message id last: it may hold anything).
   */
  a2aTaskPrefix: (agent: string) => `a2a|t|${agent}|`,
  a2aTask: (agent: string, task: string) => `a2a|t|${agent}|${task}|`,
  a2aEvents: (agent: string, task: string) => `a2a|e|${agent}|${task}|`,
  a2aEvent: (agent: string, task: string, seq: number) => `a2a|e|${agent}|${task}|${pad(seq)}|`,
  a2aMessage: (agent: string, messageId: string) => `a2a|m|${agent}|${messageId}`,
  /** What retention removed from each stream, and where the stream now starts (`party/retention.ts`). */
  retention: (stream: string) => `ret|${stream}`,
  retentionPrefix: "ret|",
  /** What each open socket registered (docs, methods, feeds, groups), for a hibernation wake (`party/resume.ts`). */
  socket: (key: string) => `sock|${key}`,
  socketPrefix: "sock|",
  /** How many times the room's object started (`party/room.ts`); the team it serves, for a start by alarm. */
  roomStarts: "room|starts",
  roomTeam: "room|team",
  /** The team's policy (`party/team-policy.ts`). */
  policy: "policy",
} as const;
