/**
 * join: a new agent joins a stream with a long history (1M events; quick: 100k) and
 * subscribes from the end. Measured from `connect` until the subscription is ready (the
 * live window synced), with the bytes its socket received. Baseline: a stock y-partykit
 * client syncing a flat Y.Array of 100k events (quick: 30k).
 */
import { connect } from "../../client/node.ts";
import {
  cuttableSocket,
  eventData,
  range,
  type Scenario,
  storedLike,
  waitFor,
  within,
  type YClient,
  yClient,
} from "../lib.ts";

export const joinSize = (quick: boolean) => (quick ? 100_000 : 1_000_000);

export const join: Scenario = {
  name: "join",
  steps: (o) => 2 + o.runs * 2,
  async run(ctx) {
    const { quick, runs } = ctx.options;
    const size = joinSize(quick);
    const Y_EVENTS = quick ? 30_000 : 100_000;
    const history = await ctx.history();
    await history.fillTo(size, (s) => ctx.status(`filling to ${s.toLocaleString("en-US")} events`));
    ctx.step(`history of ${history.size.toLocaleString("en-US")} events`);

    const ms: number[] = [];
    const kb: number[] = [];
    for (let run = 0; run < runs; run++) {
      const counter = cuttableSocket();
      const t0 = performance.now();
      const team = await connect({
        host: history.server.host,
        team: history.team,
        agent: `joiner-${run}`,
        role: "bench",
        token: () => history.server.token(`joiner-${run}`, "bench", { team: history.team }),
        WebSocket: counter.WebSocket,
      });
      try {
        const sub = team.subscribe(">", () => {}, { from: "end" });
        await within("join: subscription ready", sub.ready, 120_000);
        ms.push(performance.now() - t0);
        kb.push(counter.bytesReceived / 1024);
      } finally {
        await team.close();
      }
      ctx.step(`crosstalk join ${run + 1}/${runs}`);
    }

    // Baseline: y-partykit, a flat array of 100k stored-like events, filled in
    // transactions of 1,000 pushes.
    const yMs: number[] = [];
    const yKb: number[] = [];
    const server = await ctx.server();
    const clients: YClient[] = [];
    try {
      const room = `join-${ctx.tag}`;
      const writer = yClient(server, room);
      clients.push(writer);
      await writer.synced;
      const events = writer.doc.getArray("events");
      for (let b = 0; b < Y_EVENTS / 1000; b++) {
        writer.doc.transact(() => {
          for (const i of range(1000)) events.push([storedLike(b * 1000 + i + 1, eventData(b * 1000 + i))]);
        });
        await new Promise((r) => setImmediate(r));
      }
      // A witness proves the server holds everything before anyone is timed.
      const witness = yClient(server, room);
      clients.push(witness);
      await witness.synced;
      await waitFor("y-partykit witness has the whole array", () => witness.doc.getArray("events").length >= Y_EVENTS, {
        timeoutMs: 120_000,
        intervalMs: 20,
      });
      ctx.step("y-partykit array filled");
      for (let run = 0; run < runs; run++) {
        const counter = cuttableSocket();
        const t0 = performance.now();
        const joiner = yClient(server, room, { wire: counter });
        try {
          await joiner.synced;
          yMs.push(performance.now() - t0);
          yKb.push(counter.bytesReceived / 1024);
          if (joiner.doc.getArray("events").length < Y_EVENTS)
            throw new Error("y-partykit joiner synced a partial array");
        } finally {
          joiner.destroy();
        }
        ctx.step(`y-partykit join ${run + 1}/${runs}`);
      }
    } finally {
      for (const c of clients) c.destroy();
    }
    const note = `crosstalk: ${history.size.toLocaleString("en-US")} events; y-partykit: ${Y_EVENTS.toLocaleString("en-US")}`;
    return [
      { name: "time_to_ready", unit: "ms", runs: ms, baselineRuns: yMs, baselineName: "y-partykit", note },
      { name: "kb_received", unit: "KiB", runs: kb, baselineRuns: yKb, baselineName: "y-partykit" },
    ];
  },
};
