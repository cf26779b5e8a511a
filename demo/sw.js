/**
 * The demo page's service worker: keeps the app shell (the page, its script and stylesheet)
 * so the page reloads without a network and shows what its agent kept locally (IndexedDB).
 * Stale-while-revalidate: a shell request is answered from the cache at once when it can be,
 * and refreshed from the network behind it, so a running `npm start` still shows edits on the
 * next reload. The room (`/parties/…`) never goes through the cache.
 *
 * Plain JavaScript served as is from demo/ (a service worker is its own script, not part of
 * the page's bundle). Registered by demo/app.ts.
 */
const CACHE = "crosstalk-shell-v1";
const SHELL = ["/", "/style.css", "/dist/app.js"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

/** The cache key of a shell request: the page itself is "/" whatever its query. */
function shellKey(url) {
  if (url.origin !== self.location.origin || url.pathname.startsWith("/parties/")) return null;
  if (url.pathname === "/" || url.pathname === "/index.html") return "/";
  return SHELL.includes(url.pathname) ? url.pathname : null;
}

self.addEventListener("fetch", (event) => {
  if (event.request.method !== "GET") return;
  const key = shellKey(new URL(event.request.url));
  if (!key) return;
  event.respondWith(
    caches.open(CACHE).then(async (cache) => {
      const cached = await cache.match(key);
      const fresh = fetch(event.request)
        .then((response) => {
          if (response.ok) void cache.put(key, response.clone());
          return response;
        })
        .catch(() => null);
      if (cached) {
        event.waitUntil(fresh);
        return cached;
      }
      return (await fresh) ?? new Response("offline, and this page was never cached", { status: 503 });
    }),
  );
});
