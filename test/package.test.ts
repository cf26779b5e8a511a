/**
 * The package as a consumer sees it: `crosstalk` and `crosstalk/node` resolve through the
 * exports map to the compiled `dist/` (built by `npm run build`, which `prepare` runs on
 * install) and expose the public API.
 */
import { execFileSync } from "node:child_process";
import { resolve } from "node:path";
import { expect, it } from "vitest";

it("resolves crosstalk and crosstalk/node to working compiled modules", () => {
  const script = `
    const core = await import("crosstalk");
    const node = await import("crosstalk/node");
    console.log(JSON.stringify({
      core: ["connect", "defineEvents", "defineContract", "CrosstalkError", "ERROR_CODES"].map((k) => typeof core[k]),
      node: typeof node.connect,
      same: node.CrosstalkError === core.CrosstalkError,
    }));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: resolve(import.meta.dirname, ".."),
  });
  expect(JSON.parse(String(out))).toEqual({
    core: ["function", "function", "function", "function", "object"],
    node: "function",
    same: true,
  });
});

it("resolves crosstalk/protocol to the compiled protocol, sharing the error class with the client", () => {
  const script = `
    const protocol = await import("crosstalk/protocol");
    const core = await import("crosstalk");
    console.log(JSON.stringify({
      parse: typeof protocol.parseClientFrame,
      replies: protocol.replies.history,
      same: protocol.CrosstalkError === core.CrosstalkError,
    }));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: resolve(import.meta.dirname, ".."),
  });
  expect(JSON.parse(String(out))).toEqual({ parse: "function", replies: "history.page", same: true });
});

it("resolves crosstalk/otel to the compiled OpenTelemetry instrumentation", () => {
  const script = `
    const otel = await import("crosstalk/otel");
    console.log(JSON.stringify({ instrument: typeof otel.instrument }));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: resolve(import.meta.dirname, ".."),
  });
  expect(JSON.parse(String(out))).toEqual({ instrument: "function" });
});
