/**
 * The bare relay (relay.ts) with `hibernate: true`, as the room runs (it must, to hold 32k
 * sockets). A second reference beside the stock relay: the same forwarding code, so the
 * difference between the two is the runtime's own cost of hibernating sockets, the floor
 * the room pays before any of its own work.
 */
import type * as Party from "partykit/server";
import Relay from "./relay.ts";

export default class HibernatingRelay extends Relay {
  readonly options: Party.ServerOptions = { hibernate: true };
}
