/**
 * The room's floor for a call (`bench/profile-rpc.ts`, system "floor"): the hibernating relay
 * (`relay-hibernate.ts`) doing only the work a room must do per call frame, with the
 * protocol's own functions, and nothing else: no dispatch table, session, batching, metrics,
 * trace records, deadlines or limits. What it reaches against the hibernating relay is the
 * best ratio any rework of the room can reach on this runtime.
 *
 * Per `rpc.call`: parse and check it (`parseClientFrame`), authorize it (`Grants.permits`
 * on its target, as `policy.ts` asks), find the callee's socket by agent name, remember the
 * call, and send the `rpc.request` with the room's fields (id, from, deadline, trace fields).
 * Per `rpc.result`: parse and check it, find the call, check the answer comes from its callee,
 * and send the caller its `rpc.response`. The agent is the socket's `_pk`; no token.
 */
import type * as Party from "partykit/server";
import { type ClientFrame, Grants, parseClientFrame, type RoomFrame, targetResource } from "../protocol/index.ts";

type Call = { caller: Party.Connection; ref: string; callee: string };

export default class RelayFloor implements Party.Server {
  readonly options: Party.ServerOptions = { hibernate: true };
  readonly #grants = new Grants({ allow: ["rpc.call", "rpc.serve"], deny: [] });
  readonly #calls = new Map<string, Call>();
  #next = 0;

  constructor(readonly room: Party.Room) {}

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection): void {
    if (typeof message !== "string") return;
    const parsed = parseClientFrame(message);
    if (!parsed.ok) return sender.send(JSON.stringify({ type: "error", error: parsed.error }));
    const frame: ClientFrame = parsed.frame;
    if (frame.type === "rpc.call") {
      if (!this.#grants.permits("rpc.call", targetResource(frame.to, frame.method)))
        return this.#answer(sender, frame.ref, "FORBIDDEN");
      const callee = typeof frame.to === "string" ? this.room.getConnection(frame.to) : undefined;
      if (!callee) return this.#answer(sender, frame.ref, "NO_ROUTE");
      const id = `c${++this.#next}`;
      this.#calls.set(id, { caller: sender, ref: frame.ref, callee: callee.id });
      const request: RoomFrame = {
        type: "rpc.request",
        id,
        from: sender.id,
        method: frame.method,
        input: frame.input,
        deadline: Date.now() + frame.timeoutMs,
      };
      if (frame.callId) request.callId = frame.callId;
      if (frame.correlationId) request.correlationId = frame.correlationId;
      if (frame.traceparent) request.traceparent = frame.traceparent;
      callee.send(JSON.stringify(request));
    } else if (frame.type === "rpc.result") {
      const call = this.#calls.get(frame.id);
      if (!call || call.callee !== sender.id) return;
      this.#calls.delete(frame.id);
      const response: RoomFrame = frame.ok
        ? { type: "rpc.response", ref: call.ref, ok: true, output: frame.output }
        : { type: "rpc.response", ref: call.ref, ok: false, error: frame.error };
      call.caller.send(JSON.stringify(response));
    }
  }

  #answer(caller: Party.Connection, ref: string, code: "FORBIDDEN" | "NO_ROUTE"): void {
    const response: RoomFrame = { type: "rpc.response", ref, ok: false, error: { code, message: code } };
    caller.send(JSON.stringify(response));
  }
}
