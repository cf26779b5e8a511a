/**
 * The client core and the protocol run unchanged in Chromium, workerd and Node: they must
 * not import Node built-ins or Node-only packages. Node extras live behind `client/node.ts`;
 * the CLI lives apart, in `cli/`. The workerd and browser tests prove it runs there; this one
 * keeps it that way.
 */
import { expect, it } from "vitest";
import { importsOf, sourcesOf } from "./sources.ts";

const NODE_ONLY_FILES = new Set(["client/node.ts", "client/file-storage.ts", "client/otel.ts"]);
const NODE_ONLY_MODULES = /^(node:|fs$|path$|os$|child_process$|net$|http$|https$|crypto$|ws$|tsx|commander$)/;

it.each(["protocol", "client"])("has no Node-only imports in %s/ (outside client/node.ts)", (folder) => {
  const offenders: string[] = [];
  for (const file of sourcesOf(folder)) {
    if (NODE_ONLY_FILES.has(file)) continue;
    for (const spec of importsOf(file)) {
      if (NODE_ONLY_MODULES.test(spec)) offenders.push(`${file}: ${spec}`);
    }
  }
  expect(offenders).toEqual([]);
});
