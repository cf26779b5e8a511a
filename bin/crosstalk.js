#!/usr/bin/env node
// The `crosstalk` command: the CLI compiled to dist/cli/ by `npm run build` (which `prepare`
// runs on install and `npm pack` runs before packing), run by plain node: no TypeScript
// loader at run time, so none among the package's dependencies.
let cli;
try {
  cli = await import("../dist/cli/main.js");
} catch (error) {
  // Only a checkout that was never built gets here: a published package ships dist/.
  if (error?.code !== "ERR_MODULE_NOT_FOUND" || !String(error.message).includes("dist/cli/main.js")) throw error;
  process.stderr.write("crosstalk: the CLI is not built (dist/cli/main.js is missing); run `npm run build`\n");
  process.exit(1);
}

// `crosstalk tail … | head` closes stdout early: that is a normal way to stop.
process.stdout.on("error", (error) => {
  if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw error;
});

const code = await cli.main(process.argv.slice(2));
// Exit now rather than when the event loop drains: a closed WebSocket may still wait for the
// room's closing handshake (ws allows it 30 s). Flush what was written first.
const flushed = (stream) => new Promise((resolve) => stream.write("", () => resolve()));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
