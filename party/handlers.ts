/**
 * The one contract between the room and its modules. A module (streams, consumers, leases,
 * …) exports the frames it handles and the HTTP resources it serves; `room.ts` composes
 * them into one dispatch table and one route list, and `dispatch.ts` and `http.ts` are the
 * only places that turn what a handler returns into frames and responses.
 *
 * Adding a frame type: its schema (and its reply, if answered) in `protocol/frames.ts`, the
 * sender in one client module, the handler in one room module. The dispatch table's type
 * requires a handler for every client frame type, so a frame without one does not compile.
 */
import type { ClientFrameOf, ClientFrameType, ErrorBody, ReplyOf, RequestType } from "../protocol/index.ts";
import type { Principal } from "./policy.ts";
import type { Session } from "./session.ts";

/** The fields of request `K`'s reply frame; the room adds `type` and `ref`. */
export type ReplyBody<K extends ClientFrameType> = K extends RequestType ? Omit<ReplyOf<K>, "type" | "ref"> : never;

/**
 * What a frame handler returns; `dispatch.ts` sends it:
 * - `{ reply }`: the answer, as the request's reply frame (protocol `replies`) with its `ref`;
 *   `afterwards` runs once it is sent (`leave` frees the agent id only after answering).
 * - `{ error }`: a refusal, as an `error` frame with the frame's `ref`; nothing was applied.
 * - `{ later }`: the outcome once the promise settles, typically once storage has the write.
 *   The session's next frame does not wait for it, so a fast publisher still shares commits.
 * - nothing: the frame needs no answer, or the module answers with frames of its own (a
 *   call's `rpc.response` comes from the callee, whenever it answers).
 */
export type Outcome<K extends ClientFrameType> =
  | { reply: ReplyBody<K>; afterwards?: () => void }
  | { error: ErrorBody }
  | { later: Promise<Outcome<K>> }
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler with nothing to answer just returns.
  | void;

/** How a frame arrived: its size on the wire (publish measures events only when it matters). */
export type Wire = { readonly chars: number };

export type FrameHandler<K extends ClientFrameType> = (
  session: Session,
  frame: ClientFrameOf<K>,
  wire: Wire,
) => Outcome<K> | Promise<Outcome<K>>;

/** A module's handlers, one per frame type it owns. */
export type FrameHandlers<K extends ClientFrameType> = { readonly [T in K]: FrameHandler<T> };

/** The room's whole table: exactly one handler for every client frame type. */
export type DispatchTable = FrameHandlers<ClientFrameType>;

/**
 * An HTTP resource below `/parties/<party>/<team>`: `path` is its segments, `:name` for
 * a parameter (`streams/:stream`; "" for the team itself). Parameters arrive URL-decoded and
 * not yet validated. GET unless `methods` says otherwise (the A2A gateway takes POST);
 * `request` is the request itself and who made it (already allowed to reach the path).
 */
export type Route = {
  readonly path: string;
  readonly methods?: readonly string[];
  handle(params: Record<string, string>, url: URL, request: RouteRequest): Response | Promise<Response>;
};

/** The request a route answers, and its verified caller (with its grants). */
export type RouteRequest = { readonly req: Request; readonly principal: Principal };

/** What a room module contributes: frame handlers and HTTP routes. */
export type RoomModule<K extends ClientFrameType = never> = {
  readonly frames: FrameHandlers<K>;
  readonly routes?: readonly Route[];
};

/** A JSON error response with the protocol's error body. */
export const httpError = (status: number, error: ErrorBody): Response => Response.json({ error }, { status });
