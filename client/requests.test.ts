/**
 * Requests take their answer's type from the protocol's `replies` table, and check it once:
 * a caller never narrows the answer itself.
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import type { ClientFrame, ReplyOf } from "../protocol/index.ts";
import { Requests } from "./requests.ts";
import type { Transport } from "./transport.ts";

function setup() {
  const sent: ClientFrame[] = [];
  const transport = { status: "online", send: (f: ClientFrame) => sent.push(f) > 0 } as unknown as Transport;
  return { requests: new Requests(transport), sent };
}

describe("Requests.ask", () => {
  it("resolves with the reply the protocol names, typed as that frame", async () => {
    const { requests, sent } = setup();
    const asked = requests.ask({ type: "consumer.get", stream: "main", consumer: "c" });
    expectTypeOf(asked).resolves.toEqualTypeOf<ReplyOf<"consumer.get">>();
    const ref = (sent[0] as { ref: string }).ref;
    requests.receive(ref, { type: "consumer.state", ref, stream: "main", consumer: "c", acked: 7 });
    await expect(asked).resolves.toMatchObject({ type: "consumer.state", acked: 7 });
  });

  it("fails with INTERNAL when the room answers with another frame type", async () => {
    const { requests, sent } = setup();
    const asked = requests.ask({ type: "lease.acquire", name: "x", ttlMs: 1000 });
    const ref = (sent[0] as { ref: string }).ref;
    requests.receive(ref, { type: "ok", ref });
    await expect(asked).rejects.toMatchObject({ code: "INTERNAL" });
  });

  it("fails with the room's error when refused", async () => {
    const { requests, sent } = setup();
    const asked = requests.ask({ type: "lease.acquire", name: "x", ttlMs: 1000 });
    const ref = (sent[0] as { ref: string }).ref;
    requests.receive(ref, { type: "error", ref, error: { code: "CONFLICT", message: "held" } });
    await expect(asked).rejects.toMatchObject({ code: "CONFLICT" });
  });
});
