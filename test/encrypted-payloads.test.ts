/**
 * End-to-end encrypted event payloads: sealed by the publisher, opened by readers holding the
 * key; the room's storage and its history view hold only ciphertext; a tampered or misbound
 * payload fails with DECRYPT_FAILED.
 */
import { base64url, CompactEncrypt, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type CrosstalkError, isSealed, type Sealed, type StoredEvent } from "../client/index.ts";
import { createTestRoom, eventually, type TestRoom } from "./harness.ts";

let room: TestRoom;
beforeAll(() => {
  room = createTestRoom();
});
afterAll(async () => {
  await room?.[Symbol.asyncDispose]();
});

const key = base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
const encryption = { keys: { k1: key }, streams: { deals: "k1" } };
const secret = { customer: "ACME Corp", amount: 1_234_567 };

it("round trips between agents; the room and the history view see only ciphertext", async () => {
  const team = room.team("e2e");
  const seller = await room.agent("seller", { team, encryption });
  const buyer = await room.agent("buyer", { team, encryption });
  const outsider = await room.agent("outsider", { team }); // no keys

  const got: StoredEvent[] = [];
  await buyer.subscribe("deal.>", (e) => void got.push(e), { stream: "deals", from: "start" });
  const raw: StoredEvent[] = [];
  await outsider.subscribe("deal.>", (e) => void raw.push(e), { stream: "deals", from: "start" });

  const sent = await seller.publish("deal.won", secret, { stream: "deals", key: "D1" });
  // A stream with no key, and a message opting out, stay in the clear.
  await seller.publish("note", { hello: "world" });
  await seller.publish("deal.public", { n: 1 }, { stream: "deals", encrypt: false });

  await eventually(() =>
    expect(got.map((e) => [e.type, e.data])).toEqual([
      ["deal.won", secret],
      ["deal.public", { n: 1 }],
    ]),
  );
  expect(got[0]).toMatchObject({ id: sent.id, key: "D1", source: "seller" });

  // Without the key: the sealed payload, as the room stores it.
  await eventually(() => expect(raw).toHaveLength(2));
  const sealed = raw[0]?.data as Sealed;
  expect(isSealed(sealed)).toBe(true);
  expect(decodeProtectedHeader(sealed.$jwe)).toMatchObject({
    alg: "dir",
    enc: "A256GCM",
    kid: "k1",
    ctx: { team, stream: "deals", id: sent.id, type: "deal.won" },
  });

  // History through the client opens it; the HTTP view and storage hold only ciphertext.
  const history: StoredEvent[] = [];
  for await (const e of buyer.history({ stream: "deals" })) history.push(e);
  expect(history[0]?.data).toEqual(secret);
  const view = await (await room.fetch(`/parties/main/${team}/streams/deals`)).text();
  expect(view).toContain(sent.id);
  expect(view).not.toContain("ACME");
  const stored = JSON.stringify([...(await room.storage(team).list({ prefix: "" }))].map(([k]) => k));
  expect(stored).not.toContain("ACME");
  const bytes = [...(await room.storage(team).list<unknown>({ prefix: "" })).values()]
    .map((v) => (v instanceof Uint8Array ? new TextDecoder().decode(v) : JSON.stringify(v)))
    .join("");
  expect(bytes).not.toContain("ACME");
  expect(bytes).not.toContain("1234567");
});

it("refuses a tampered header, a payload moved to another event, and an unknown key with DECRYPT_FAILED", async () => {
  const team = room.team("e2e-tamper");
  const mallory = await room.agent("mallory", { team }); // publishes crafted ciphertexts, has no key
  const reader = await room.agent("reader", { team, encryption });
  const errors: CrosstalkError[] = [];
  reader.on("error", (error) => void errors.push(error as CrosstalkError));
  const delivered: StoredEvent[] = [];
  await reader.subscribe("deal.>", (e) => void delivered.push(e), { stream: "deals", from: "start", maxDeliver: 1 });

  const sealFor = async (ctx: object, header: Record<string, unknown> = {}) => {
    const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(secret)))
      .setProtectedHeader({ alg: "dir", enc: "A256GCM", kid: "k1", ctx, ...header })
      .encrypt(base64url.decode(key));
    return { $jwe: jwe };
  };
  // 1. Sealed for another event id (a ciphertext replayed onto a new event).
  await mallory.publish("deal.won", await sealFor({ team, stream: "deals", id: "other", type: "deal.won" }), {
    stream: "deals",
  });
  // 2. A valid payload whose protected header is edited (the type rebound): the tag no longer matches.
  const good = await sealFor({ team, stream: "deals", id: "fixed-id", type: "deal.lost" });
  const [h, ...rest] = good.$jwe.split(".");
  const header = JSON.parse(new TextDecoder().decode(base64url.decode(h as string)));
  header.ctx.type = "deal.won";
  const tampered = [base64url.encode(JSON.stringify(header)), ...rest].join(".");
  await mallory.publish("deal.won", { $jwe: tampered }, { stream: "deals", id: "fixed-id" });
  // 3. An unknown key id.
  await mallory.publish(
    "deal.won",
    await sealFor({ team, stream: "deals", id: "x", type: "deal.won" }, { kid: "k9" }),
    {
      stream: "deals",
      id: "x",
    },
  );

  await eventually(() => expect(errors).toHaveLength(3));
  expect(errors.map((e) => e.code)).toEqual(["DECRYPT_FAILED", "DECRYPT_FAILED", "DECRYPT_FAILED"]);
  expect(errors[0]?.message).toMatch(/sealed for id "other"/);
  expect(errors[2]?.message).toMatch(/no payload key with id "k9"/);
  expect(delivered).toEqual([]);
  // Dead-lettered still sealed; history refuses too.
  await expect(
    (async () => {
      for await (const _ of reader.history({ stream: "deals" })) void _;
    })(),
  ).rejects.toMatchObject({ code: "DECRYPT_FAILED" });
});

it("seals call and message input end to end: the callee opens it, the room's inbox holds only ciphertext, a misbound one fails", async () => {
  const team = room.team("e2e-rpc");
  const withMethods = { keys: { k1: key }, methods: { approve: "k1", notify: "k1" } };
  const legal = await room.agent("legal", { team, role: "legal", encryption: withMethods });
  const seen: unknown[] = [];
  legal.handle("approve", (input, ctx) => {
    seen.push({ input, from: ctx.from });
    return { ok: true };
  });
  const sales = await room.agent("sales", { team, encryption: withMethods });
  await eventually(() => expect(sales.agents().find((a) => a.agent === "legal")?.methods).toEqual(["approve"]));

  expect(await sales.call("legal", "approve", secret)).toEqual({ ok: true });
  expect(seen).toEqual([{ input: secret, from: "sales" }]);

  // A message to an offline agent waits in the room's inbox: sealed there.
  await sales.send("mailer", "notify", secret);
  const bytes = [...(await room.storage(team).list<unknown>({ prefix: "" })).values()];
  expect(JSON.stringify(bytes)).not.toContain("ACME Corp");
  const notes: unknown[] = [];
  const mailer = await room.agent("mailer", { team, encryption: withMethods });
  mailer.handle("notify", (input) => void notes.push(input));
  await eventually(() => expect(notes).toEqual([secret]));

  // A caller without the key cannot be read; a callee without it answers DECRYPT_FAILED.
  const keyless = await room.agent("keyless", { team, role: "legal" });
  keyless.handle("approve", () => ({ ok: "should not run" }));
  await eventually(() => expect(sales.agents().find((a) => a.agent === "keyless")?.methods).toEqual(["approve"]));
  await expect(sales.call("keyless", "approve", secret)).rejects.toMatchObject({ code: "DECRYPT_FAILED" });
  // An input sealed by one agent and replayed by another does not open: `from` is bound.
  const mallory = await room.agent("mallory", { team, encryption: withMethods });
  const replay = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(secret)))
    .setProtectedHeader({
      alg: "dir",
      enc: "A256GCM",
      kid: "k1",
      ctx: { team, stream: "@call", id: "x", type: "approve", from: "sales" },
    })
    .encrypt(base64url.decode(key));
  await expect(mallory.call("legal", "approve", { $jwe: replay }, { encrypt: false })).rejects.toMatchObject({
    code: "DECRYPT_FAILED",
  });
  expect(seen).toHaveLength(1);
});
