#!/usr/bin/env node
// The `crosstalk` command. The CLI is TypeScript (client/cli.ts); tsx compiles it on load,
// so plain `node` runs it without a build step (Node >= 20.6, for module.register).
import { register } from "tsx/esm/api";

register();
const { main } = await import("../client/cli.ts");

// `crosstalk tail … | head` closes stdout early: that is a normal way to stop.
process.stdout.on("error", (error) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw error;
});

const code = await main(process.argv.slice(2));
// Exit now rather than when the event loop drains: a closed WebSocket may still wait for the
// room's closing handshake (ws allows it 30 s). Flush what was written first.
const flushed = (stream) => new Promise((resolve) => stream.write("", () => resolve()));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
