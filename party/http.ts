/**
 * HTTP, for tools (`curl`, dashboards, the CLI) and the A2A gateway: resources below
 * `/parties/<party>/<team>`, contributed by the room's modules as routes (GET unless a route
 * names other methods). Every request passes `policy.ts` before its route runs.
 */
import { httpError, type Route } from "./handlers.ts";
import { authorize, type Principal } from "./policy.ts";

/** Answers an HTTP request made by `principal` (the verified caller, or null without a token). */
export type HttpHandler = (req: Request, principal: Principal) => Promise<Response>;

/** A handler that matches a request's path (after the team segment) against `routes`, first match wins. */
export function createHttp(routes: readonly Route[]): HttpHandler {
  const compiled = routes.map((route) => ({ route, segments: route.path.split("/").filter(Boolean) }));
  return async (req, principal) => {
    const url = new URL(req.url);
    // parts: ["parties", <party>, <team>, ...rest]
    let rest: string[];
    try {
      rest = url.pathname.split("/").filter(Boolean).map(decodeURIComponent).slice(3);
    } catch {
      return httpError(400, { code: "INVALID_ARGUMENT", message: "the path is not valid percent-encoding" });
    }
    for (const { route, segments } of compiled) {
      const params = match(segments, rest);
      if (!params) continue;
      const methods = route.methods ?? ["GET"];
      if (!methods.includes(req.method)) {
        return new Response("method not allowed", { status: 405, headers: { Allow: methods.join(", ") } });
      }
      const denied = authorize(principal, "read", { http: url.pathname });
      if (denied) return httpError(denied.code === "UNAUTHORIZED" ? 401 : 403, denied);
      return route.handle(params, url, { req, principal });
    }
    if (req.method !== "GET") return new Response("method not allowed", { status: 405 });
    return httpError(404, { code: "NOT_FOUND", message: `no such resource ${url.pathname}` });
  };
}

function match(segments: string[], parts: string[]): Record<string, string> | null {
  if (segments.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (const [i, segment] of segments.entries()) {
    const part = parts[i] as string;
    if (segment.startsWith(":")) params[segment.slice(1)] = part;
    else if (segment !== part) return null;
  }
  return params;
}
