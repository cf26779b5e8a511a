/**
 * reconnect: an agent subscribed to `>` loses its socket (cut without a close handshake,
 * then held offline) while 10,000 events are published; then the network comes back and
 * partysocket reconnects by itself. Measured from the new socket opening until the
 * subscriber has handled every missed event, with the bytes received meanwhile.
 * Baseline: a stock y-partykit client observing a flat Y.Array, cut and held the same way
 * while the publisher pushes 10,000 events (in transactions of 1,000).
 */
import {
  cuttableSocket,
  eventData,
  type Metric,
  range,
  type Scenario,
  storedLike,
  waitFor,
  within,
  type YClient,
  yClient,
} from "../lib.ts";

const MISSED = 10_000;
const BEFORE = 100;

export const reconnect: Scenario = {
  name: "reconnect",
  steps: (o) => o.runs * 2,
  async run(ctx) {
    const { runs } = ctx.options;
    const server = await ctx.server();
    const ms: number[] = [];
    const kb: number[] = [];
    const yMs: number[] = [];
    const yKb: number[] = [];
    for (let run = 0; run < runs; run++) {
      // crosstalk: a fresh team per run.
      const team = `reconnect-${ctx.tag}-${run}`;
      const counter = cuttableSocket();
      const publisher = await server.agent("publisher", { team });
      const follower = await server.agent("follower", {
        team,
        WebSocket: counter.WebSocket,
        minReconnectDelayMs: 20,
        maxReconnectDelayMs: 100,
      });
      let last = 0;
      let caughtUpAt = 0;
      let target = BEFORE;
      const sub = follower.subscribe(">", (e) => {
        last = e.seq;
        if (last >= target && !caughtUpAt) caughtUpAt = performance.now();
      });
      await within("follower subscribed", sub.ready, 30_000);
      await publisher.publishBatch(range(BEFORE).map((i) => ({ type: "bench.before", data: eventData(i) })));
      await waitFor("follower has the first events", () => last >= BEFORE, { timeoutMs: 30_000 });

      const cutAt = performance.now();
      counter.down();
      await waitFor("follower offline", () => follower.status === "offline", { timeoutMs: 30_000 });
      for (let b = 0; b < MISSED / 1000; b++) {
        await within(
          "publish while the follower is away",
          publisher.publishBatch(range(1000).map((i) => ({ type: "bench.missed", data: eventData(b * 1000 + i) }))),
          60_000,
        );
      }
      target = BEFORE + MISSED;
      caughtUpAt = 0;
      const receivedBefore = counter.bytesReceived;
      counter.up();
      await waitFor("follower reconnected", () => counter.openedAt > cutAt, { timeoutMs: 30_000 });
      await waitFor("follower caught up", () => caughtUpAt > 0, { timeoutMs: 120_000, intervalMs: 1 });
      ms.push(caughtUpAt - counter.openedAt);
      kb.push((counter.bytesReceived - receivedBefore) / 1024);
      await Promise.all([publisher.close(), follower.close()]);
      ctx.step(`crosstalk ${run + 1}/${runs}`);

      // y-partykit: a fresh room per run.
      const room = `reconnect-${ctx.tag}-${run}`;
      const yCounter = cuttableSocket();
      const clients: YClient[] = [];
      try {
        const writer = yClient(server, room);
        const reader = yClient(server, room, { wire: yCounter, maxBackoffTime: 100 });
        clients.push(writer, reader);
        await Promise.all([writer.synced, reader.synced]);
        const out = writer.doc.getArray("events");
        const seen = reader.doc.getArray("events");
        let yCaughtUpAt = 0;
        let yTarget = BEFORE;
        seen.observe(() => {
          if (seen.length >= yTarget && !yCaughtUpAt) yCaughtUpAt = performance.now();
        });
        writer.doc.transact(() => {
          for (const i of range(BEFORE)) out.push([storedLike(i + 1, eventData(i))]);
        });
        await waitFor("y reader has the first events", () => seen.length >= BEFORE, { timeoutMs: 30_000 });
        const yCutAt = performance.now();
        yCounter.down();
        await waitFor("y reader offline", () => !reader.provider.wsconnected, { timeoutMs: 30_000 });
        for (let b = 0; b < MISSED / 1000; b++) {
          writer.doc.transact(() => {
            for (const i of range(1000)) out.push([storedLike(BEFORE + b * 1000 + i + 1, eventData(i))]);
          });
          await new Promise((r) => setImmediate(r));
        }
        // The server must hold the missed events before the reader comes back.
        const witness = yClient(server, room);
        clients.push(witness);
        await witness.synced;
        await waitFor("y witness has everything", () => witness.doc.getArray("events").length >= BEFORE + MISSED, {
          timeoutMs: 60_000,
          intervalMs: 10,
        });
        yTarget = BEFORE + MISSED;
        yCaughtUpAt = 0;
        const yReceivedBefore = yCounter.bytesReceived;
        yCounter.up();
        await waitFor("y reader reconnected", () => yCounter.openedAt > yCutAt, { timeoutMs: 30_000 });
        await waitFor("y reader caught up", () => yCaughtUpAt > 0, { timeoutMs: 120_000, intervalMs: 1 });
        yMs.push(yCaughtUpAt - yCounter.openedAt);
        yKb.push((yCounter.bytesReceived - yReceivedBefore) / 1024);
      } finally {
        for (const c of clients) c.destroy();
      }
      ctx.step(`y-partykit ${run + 1}/${runs}`);
    }
    const metrics: Metric[] = [
      {
        name: "catch_up_ms",
        unit: "ms",
        runs: ms,
        baselineRuns: yMs,
        baselineName: "y-partykit",
        note: `${MISSED.toLocaleString("en-US")} events missed; from socket open to all handled`,
      },
      { name: "catch_up_kb", unit: "KiB", runs: kb, baselineRuns: yKb, baselineName: "y-partykit" },
    ];
    return metrics;
  },
};
