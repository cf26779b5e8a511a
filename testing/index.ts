/**
 * crosstalk/testing: the harness crosstalk tests itself with, for projects whose agents talk
 * through crosstalk. Node-only (it spawns processes and uses `ws`); never imported by the
 * library core.
 *
 * - `createTestRoom()`: the room in process (the real `TeamRoom` over in-memory storage and
 *   sockets), for fast tests of agents.
 * - `startRoom()`: a real `partykit dev` on a free port, for tests of the real server.
 * - `startFaultProxy()`: a TCP proxy that refuses, resets, ends, blackholes or delays links.
 * - `cuttableSocket()`, `eventually()`, `sleep()`: faults and waiting.
 */
export { type CuttableSocket, cuttableSocket, type OutgoingData, type WsClass } from "./cuttable.ts";
export {
  findPartykit,
  freePort,
  packagedConfig,
  type RoomServer,
  type StartRoomOptions,
  startRoom,
} from "./dev-server.ts";
export { TestKitError, type TestKitErrorCode } from "./errors.ts";
export { type FaultMode, type FaultProxy, startFaultProxy } from "./fault-proxy.ts";
export type { AgentOptions, TestHost, WebSocketLike } from "./host.ts";
export { MemoryCloseEvent, MemoryWebSocket, type MemoryWebSocketClass } from "./memory-socket.ts";
export { createTestRoom, type TestRoom, type TestRoomOptions } from "./test-room.ts";
export { type EventuallyOptions, eventually, sleep } from "./wait.ts";
