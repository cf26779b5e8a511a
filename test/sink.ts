/**
 * A Writable that keeps what is written: the stdout/stderr tests hand to the CLI's
 * `main(argv, { stdout, stderr })` to read what it printed (test/cli.test.ts, cli/*.test.ts).
 */
import { Writable } from "node:stream";

export function sink(): { stream: Writable; text: () => string } {
  let text = "";
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      text += String(chunk);
      callback();
    },
  });
  return { stream, text: () => text };
}
