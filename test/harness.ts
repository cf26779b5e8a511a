/**
 * The project's own tests use the kit it ships (`crosstalk/testing`, source in `testing/`):
 * this module only points `startRoom` at the test project (the real room plus a workerd
 * agent party, `test/fixtures/partykit.json`) and re-exports the rest.
 *
 *   await using room = await startRoom();
 *   const a = await room.agent("sales-1");
 */
import { join, resolve } from "node:path";
import {
  createTestRoom,
  type RoomServer,
  type StartRoomOptions,
  startRoom as startKitRoom,
  type TestHost,
} from "../testing/index.ts";

export * from "../testing/index.ts";

const ROOT = resolve(import.meta.dirname, "..");
/** The test project: the real room plus a workerd agent party (test/fixtures). */
export const TEST_CONFIG = join(ROOT, "test/fixtures/partykit.json");

/** `startRoom` of the kit, on the test project (from the repository root) unless told otherwise. */
export function startRoom(options: StartRoomOptions = {}): Promise<RoomServer> {
  // The wrangler host runs the kit's own config (`testing/wrangler.jsonc`: the room alone).
  return startKitRoom({ ...(options.host === "wrangler" ? {} : { config: TEST_CONFIG }), cwd: ROOT, ...options });
}

/** Numbers in [0, 1] from `seed`, the same sequence every run: for reproducible review fuzz. */
export const seededRandom = (seed: number) => (): number => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};

/**
 * Both rooms, for cases that must hold on either: `describe.each(ROOMS)("… on the %s", (_, start) => …)`.
 * The real server's pass costs a `partykit dev` start; use it where the server itself matters.
 */
export const ROOMS: [name: string, start: () => Promise<TestHost>][] = [
  ["in-process room", async () => createTestRoom()],
  ["real server", () => startRoom()],
];
