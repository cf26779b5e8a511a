/**
 * `crosstalk export <team> > team.ndjson` and `crosstalk import <team> < team.ndjson`: a
 * team's backup as NDJSON (the format and what restoring guarantees: `party/backup.ts`),
 * over the room's admin-only `…/<team>/backup` route. Both need a token whose role has
 * `policy.admin` (`--role admin` against a dev room). A progress bar goes to stderr.
 *
 * Import posts the backup in batches (each starting with the header line), a batch at most
 * ~512 KB unless one line is larger, retrying a failed batch; the room skips what it already
 * has, so rerunning an interrupted import finishes it.
 */
import type { Readable } from "node:stream";
import type { Command } from "commander";
import { intArg, nameArg } from "./args.ts";
import { credentials } from "./auth.ts";
import { CliFailure } from "./errors.ts";
import { renderProgress } from "./format.ts";
import type { CliIO, Output } from "./io.ts";
import type { Globals } from "./team.ts";

const BATCH_BYTES = 512 * 1024;
const BATCH_LINES = 500;
const RETRIES = 4;

export function addBackupCommands(program: Command, ctx: CliIO): void {
  program
    .command("export")
    .description("Write the team (streams, state, consumer positions, policy) as NDJSON to stdout.")
    .argument("<team>", "team name", nameArg("team"))
    .action(async (team: string, _opts: unknown, cmd: Command) => {
      const url = await backupUrl(ctx, cmd, team);
      const res = await fetch(url.href, { headers: url.headers });
      if (!res.ok || !res.body) throw await refusal(res, "export");
      const progress = new Progress(ctx.stderr, "export");
      let rest = "";
      let first: string | null = null;
      let last = "";
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        rest += decoder.decode(chunk, { stream: true });
        const lines = rest.split("\n");
        rest = lines.pop() ?? "";
        for (const line of lines) {
          first ??= line;
          last = line;
          if (!ctx.stdout.write(`${line}\n`)) await new Promise((r) => ctx.stdout.once("drain", r));
          progress.line(line);
        }
      }
      if (rest !== "") throw new CliFailure("export: the room's answer ended mid-line; the backup is incomplete");
      if (!isEnd(last, first))
        throw new CliFailure("export: the room's answer ended before its end line; the backup is incomplete");
      progress.done();
    });

  program
    .command("import")
    .description("Restore a team exported with `export` (NDJSON on stdin) into an empty room; rerun to resume.")
    .argument("<team>", "team name", nameArg("team"))
    .option(
      "--batch-bytes <n>",
      "largest request body, roughly (a single larger line goes alone)",
      intArg(1),
      BATCH_BYTES,
    )
    .action(async (team: string, opts: { batchBytes: number }, cmd: Command) => {
      const url = await backupUrl(ctx, cmd, team);
      const progress = new Progress(ctx.stderr, "import");
      let header: string | null = null;
      let last = "";
      let batch: string[] = [];
      let bytes = 0;
      const send = async () => {
        if (batch.length === 0 || header === null) return;
        await post(url, `${header}\n${batch.join("\n")}\n`);
        for (const line of batch) progress.line(line);
        batch = [];
        bytes = 0;
      };
      for await (const line of lines(ctx.stdin ?? process.stdin)) {
        if (line.trim() === "") continue;
        if (header === null) {
          header = line;
          progress.line(line);
          continue;
        }
        batch.push(line);
        last = line;
        bytes += line.length;
        if (bytes >= opts.batchBytes || batch.length >= BATCH_LINES) await send();
      }
      if (header === null) throw new CliFailure("import: stdin is empty; expected a crosstalk export");
      await send();
      // The export's last line: without it the file was cut short, and the room is missing the rest.
      if (!isEnd(last, header))
        throw new CliFailure("import: the backup has no end line, so it is incomplete; what it held was restored");
      progress.done();
    });
}

/** Whether `line` is the `end` line of the backup `header` starts. */
function isEnd(line: string, header: string | null): boolean {
  try {
    const end = JSON.parse(line) as { kind?: unknown; backupId?: unknown };
    const head = JSON.parse(header ?? "null") as { backupId?: unknown } | null;
    return end.kind === "end" && end.backupId === head?.backupId;
  } catch {
    return false;
  }
}

type Target = { href: string; headers: Record<string, string> };

async function backupUrl(ctx: CliIO, cmd: Command, team: string): Promise<Target> {
  const g = cmd.optsWithGlobals<Globals>();
  const who = await credentials(g, ctx, { host: g.host, team });
  const scheme = /^(localhost|127\.|\[::1\])/.test(g.host) ? "http" : "https";
  return {
    href: `${scheme}://${g.host}/parties/main/${team}/backup`,
    headers: { authorization: `Bearer ${await who.token()}` },
  };
}

async function post(url: Target, body: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(url.href, {
        method: "POST",
        headers: { ...url.headers, "content-type": "application/x-ndjson" },
        body,
      });
    } catch (error) {
      if (attempt >= RETRIES) throw new CliFailure(`import: the room did not answer (${(error as Error).message})`);
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      continue;
    }
    if (res.ok) return;
    if (res.status >= 500 && attempt < RETRIES) {
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      continue;
    }
    throw await refusal(res, "import");
  }
}

async function refusal(res: Response, what: string): Promise<CliFailure> {
  const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
  const error = body?.error;
  return new CliFailure(
    `${what}: the room refused (${res.status}${error?.code ? ` ${error.code}` : ""}): ${error?.message ?? res.statusText}`,
  );
}

/** Lines of a text stream, without their newline; a backup line can be megabytes long. */
async function* lines(input: Readable): AsyncGenerator<string> {
  let rest = "";
  input.setEncoding("utf8");
  for await (const chunk of input as AsyncIterable<string>) {
    rest += chunk;
    const parts = rest.split("\n");
    rest = parts.pop() ?? "";
    yield* parts;
  }
  if (rest !== "") yield rest;
}

/** The bar on stderr: lines done of the header's total. */
class Progress {
  #done = 0;
  #total = 0;
  #shown = -1;

  constructor(
    private readonly out: Output,
    private readonly what: string,
  ) {}

  line(text: string): void {
    if (this.#done === 0) {
      try {
        this.#total = (JSON.parse(text) as { totals?: { lines?: number } }).totals?.lines ?? 0;
      } catch {
        this.#total = 0;
      }
    }
    this.#done++;
    const percent = this.#total > 0 ? Math.floor((100 * this.#done) / this.#total) : 0;
    if (percent === this.#shown) return;
    this.#shown = percent;
    this.out.write(`\r${this.what} ${renderProgress(this.#done, Math.max(this.#total, this.#done))}`);
  }

  done(): void {
    this.out.write(`\r${this.what} ${renderProgress(this.#done, this.#done)}\n`);
  }
}
