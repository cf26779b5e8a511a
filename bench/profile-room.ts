/**
 * The room's CPU per call, without workerd or sockets: a `TeamRoom` in process, two fake
 * sockets, and the frames a caller and a callee send for `rpc.call` → `rpc.request` →
 * `rpc.result` → `rpc.response`, 500 calls in flight at a time. For profiling the room's
 * own JavaScript (what `rpc.room_cpu_per_call` pays on top of the relay's socket costs):
 *
 *   node --import tsx --cpu-prof --cpu-prof-dir=/tmp/prof bench/profile-room.ts
 *
 * Prints CPU µs per call (this process: the room plus the few µs of building the client
 * frames here). `N=<batches>` sets the length (default 60 batches of 500 calls). The frames
 * of a batch go as one message each way, as a client sends a tick's frames (`batchOf`) and
 * the room answers a `batch=1` client; `SINGLE=1` sends and receives one frame per message.
 */
import { MemoryKv } from "../party/memory-storage.ts";
import { TeamRoom } from "../party/room.ts";
import { batchOf, isBatch } from "../protocol/index.ts";

const BATCH = 500;
const SINGLE = process.env.SINGLE === "1";
const query = SINGLE ? "" : "&batch=1";
const room = new TeamRoom({ team: "profile", storage: new MemoryKv() });
await room.start();
const inbox = { caller: [] as string[], callee: [] as string[] };
// With `setState`, as a PartyKit connection under `hibernate: true` (the room's host) has:
// the room then does what it does there for a wake after each frame (`resume.ts`).
const socket = (name: keyof typeof inbox) => {
  let state: unknown = null;
  return {
    send: (d: unknown) => void inbox[name].push(String(d)),
    close() {},
    setState: (s: unknown) => {
      state = s;
    },
    get state() {
      return state;
    },
  };
};
const caller = socket("caller");
const callee = socket("callee");
room.connect(caller, new URL(`http://room/?agent=caller&role=agent&_pk=a${query}`));
room.connect(callee, new URL(`http://room/?agent=callee&role=agent&_pk=b${query}`));
/** The frames in what the room sent (messages that may be batches). */
const framesOf = (texts: string[]): { type: string; id: string; ref: string; input: unknown }[] =>
  texts.flatMap((t) => (isBatch(t) ? JSON.parse(t) : [JSON.parse(t)]));
/** Sends `frames` as one batch, or one message each. */
const send = (socket: typeof caller, frames: object[]) => {
  const texts = frames.map((f) => JSON.stringify(f));
  if (SINGLE) for (const t of texts) room.message(socket, t);
  else room.message(socket, batchOf(texts));
};
room.message(callee, JSON.stringify({ type: "rpc.handle", methods: ["echo"], maxInFlight: 100_000 }));
const turn = () => new Promise((resolve) => setImmediate(resolve));
await turn();

let ref = 0;
async function batch(): Promise<void> {
  inbox.caller.length = 0;
  inbox.callee.length = 0;
  const calls: object[] = [];
  for (let i = 0; i < BATCH; i++) {
    const r = `r${++ref}`;
    calls.push({
      type: "rpc.call",
      ref: r,
      to: "callee",
      method: "echo",
      input: { i, text: "ping" },
      timeoutMs: 30_000,
      callId: `c-${r}`,
      correlationId: `c-${r}`,
    });
  }
  send(caller, calls);
  await turn();
  await turn();
  const requests = framesOf(inbox.callee.splice(0)).filter((f) => f.type === "rpc.request");
  send(
    callee,
    requests.map((f) => ({ type: "rpc.result", id: f.id, ok: true, output: f.input })),
  );
  await turn();
  await turn();
  const answered = framesOf(inbox.caller).filter((f) => f.type === "rpc.response").length;
  if (answered !== BATCH) throw new Error(`${answered} of ${BATCH} calls answered`);
}

for (let i = 0; i < 20; i++) await batch();
const batches = Number(process.env.N ?? 60);
const cpu0 = process.cpuUsage();
for (let i = 0; i < batches; i++) await batch();
const cpu = process.cpuUsage(cpu0);
process.stdout.write(`room: ${((cpu.user + cpu.system) / (batches * BATCH)).toFixed(2)} µs CPU per call\n`);
process.exit(0);
