/**
 * A client process of the `scale` scenario: holds a share of its agents, so a thousand
 * sockets are not all opened, parsed and timed by one Node event loop (from one process
 * the client's own CPU becomes what is measured). Forked by `bench/scenarios/scale.ts`,
 * driven over the IPC channel; times are wall-clock epoch milliseconds, comparable across
 * the processes of one machine.
 *
 *   parent → { op: "connect", host, team, agents: [{ name, token }], connectTimeoutMs }
 *          → { op: "subscribe", stream }   every agent follows `stream` from its end
 *          → { op: "report" }              latencies since the last report, then cleared
 *          → { op: "close" }
 *   child  → { op: "online", onlineAt: number[], failed: string[] } …
 */
import { connect, type Team } from "../client/node.ts";

export type ScaleCommand =
  | {
      op: "connect";
      host: string;
      team: string;
      agents: { name: string; token: string }[];
      connectTimeoutMs: number;
    }
  | { op: "subscribe"; stream: string }
  | { op: "report" }
  | { op: "close" };

export type ScaleReply =
  | { op: "online"; onlineAt: number[]; failed: string[] }
  | { op: "subscribed" }
  | {
      op: "report";
      latencies: number[];
      received: number;
      /** The smallest roster an agent of this process holds, and the most roster frames one got. */
      minRoster: number;
      maxRosterFrames: number;
    }
  | { op: "closed" }
  | { op: "error"; message: string };

export const now = (): number => performance.timeOrigin + performance.now();

const agents: Team[] = [];
const rosterFrames: number[] = [];
let latencies: number[] = [];
let received = 0;

function reply(message: ScaleReply): void {
  process.send?.(message);
}

async function handle(command: ScaleCommand): Promise<void> {
  switch (command.op) {
    case "connect": {
      const onlineAt: number[] = [];
      const failed: string[] = [];
      await Promise.all(
        command.agents.map(async ({ name, token }) => {
          try {
            const agent = await connect({
              host: command.host,
              team: command.team,
              agent: name,
              role: "bench",
              token,
              connectTimeoutMs: command.connectTimeoutMs,
            });
            onlineAt.push(now());
            const index = agents.push(agent) - 1;
            rosterFrames[index] = 0;
            agent.on("agents", () => {
              rosterFrames[index] = (rosterFrames[index] ?? 0) + 1;
            });
          } catch (error) {
            failed.push(`${name}: ${error instanceof Error ? error.message : String(error)}`);
          }
        }),
      );
      reply({ op: "online", onlineAt, failed });
      return;
    }
    case "subscribe":
      await Promise.all(
        agents.map(
          (a) =>
            a.subscribe(
              ">",
              (e) => {
                received++;
                latencies.push(now() - (e.data as { t: number }).t);
              },
              { stream: command.stream, from: "end" },
            ).ready,
        ),
      );
      reply({ op: "subscribed" });
      return;
    case "report":
      reply({
        op: "report",
        latencies,
        received,
        minRoster: Math.min(...agents.map((a) => a.agents().length)),
        maxRosterFrames: Math.max(0, ...rosterFrames),
      });
      latencies = [];
      return;
    case "close":
      await Promise.all(agents.map((a) => a.close()));
      reply({ op: "closed" });
      process.exit(0);
  }
}

process.on("message", (command: ScaleCommand) => {
  handle(command).catch((error: unknown) =>
    reply({ op: "error", message: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});
// The parent going away ends this process too.
process.on("disconnect", () => process.exit(0));
