/**
 * Typed direct messages: a contract names methods with zod schemas for input and output.
 *
 *   const contracts = defineContract({
 *     generateContract: { input: z.object({ dealId: z.string() }), output: z.object({ contractId: z.string() }) },
 *   });
 *   team.serve(contracts, { generateContract: async ({ dealId }) => ({ contractId: `CTR-${dealId}` }) });
 *   const legal = team.client(contracts, { role: "legal" });
 *   const { contractId } = await legal.generateContract({ dealId: "D1" });
 *
 * The callee validates input before its handler runs (INVALID_INPUT with the zod issues goes
 * back to the caller) and output before it leaves (INVALID_OUTPUT). The caller parses the
 * output again, so what it gets has the output schema's type and defaults.
 */
import { z } from "zod";
import type { MethodInfo } from "../protocol/index.ts";
import { check } from "./check.ts";
import type { CallContext, CallOptions } from "./rpc.ts";

export type MethodSpec = {
  input: z.ZodType;
  output: z.ZodType;
  /** Shown to callers that discover the method (A2A cards, tools). */
  description?: string;
  /** Fire-and-forget: the A2A gateway `send`s it (durable inbox) and acknowledges at once. */
  oneWay?: boolean;
};
export type Contract<C extends Record<string, MethodSpec> = Record<string, MethodSpec>> = { readonly methods: C };

export function defineContract<C extends Record<string, MethodSpec>>(methods: C): Contract<C> {
  return { methods };
}

export type ContractHandlers<C extends Record<string, MethodSpec>> = {
  [M in keyof C]: (
    input: z.output<C[M]["input"]>,
    ctx: CallContext,
  ) => z.input<C[M]["output"]> | Promise<z.input<C[M]["output"]>>;
};

export type ContractClient<C extends Record<string, MethodSpec>> = {
  [M in keyof C]: (input: z.input<C[M]["input"]>, options?: CallOptions) => Promise<z.output<C[M]["output"]>>;
};

/** Wraps a typed handler with input and output validation. */
export function checkedHandler(
  spec: MethodSpec,
  method: string,
  handler: (input: unknown, ctx: CallContext) => unknown,
) {
  return async (input: unknown, ctx: CallContext): Promise<unknown> => {
    const output = await handler(check(spec.input, input, `${method} input`, "INVALID_INPUT"), ctx);
    return check(spec.output, output, `${method} output`, "INVALID_OUTPUT");
  };
}

/** Parses a typed call's output on the caller's side. */
export function checkedOutput(spec: MethodSpec, method: string, output: unknown): unknown {
  return check(spec.output, output, `${method} output`, "INVALID_OUTPUT");
}

/**
 * What a contract method announces about itself (`rpc.handle` `info`): its description, its
 * input and output as JSON Schema (a schema zod cannot express in JSON Schema is left out),
 * and whether it is fire-and-forget.
 */
export function methodInfo(spec: MethodSpec): MethodInfo {
  const info: MethodInfo = {};
  if (spec.description) info.description = spec.description;
  if (spec.oneWay) info.oneWay = true;
  const input = jsonSchemaOf(spec.input, "input");
  const output = jsonSchemaOf(spec.output, "output");
  if (input) info.input = input;
  if (output) info.output = output;
  return info;
}

function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): MethodInfo["input"] {
  try {
    return z.toJSONSchema(schema, { io, unrepresentable: "any" }) as MethodInfo["input"];
  } catch {
    return undefined;
  }
}
