// The /api/tasks/* proxy from the Next.js server to the tasks service, as a plain
// (Request) => Promise<Response> function: no Next.js or Better Auth import, so it runs in the
// tests as it runs in app/api/tasks/[[...path]]/route.ts.
//
// The browser calls this app with its session cookie; the proxy finds the signed-in user,
// obtains a JWT for them and calls the service with `Authorization: Bearer` only:
//   GET /api/tasks/42?x=1  (cookie)  ->  GET {TASKS_API_URL}/api/{session user id}/tasks/42?x=1  (Bearer)
// The user id always comes from the session, never from the browser, and the browser's cookies
// and Authorization header are never sent to the service.

/** The signed-in user and a JWT for them, or null when nobody is signed in. */
export interface ProxyIdentity {
  userId: string;
  token: string;
}

export interface TasksProxyOptions {
  /** The tasks service, e.g. "http://tasks:8000" (TASKS_API_URL). */
  serviceUrl: string;
  /** From the incoming request's headers (its cookies): the session's user and a JWT for them.
   * `refresh` is true when the service refused the JWT last given for this request: give a new one. */
  authenticate: (headers: Headers, options: { refresh: boolean }) => Promise<ProxyIdentity | null>;
  fetch?: typeof fetch;
  /** Where this proxy is mounted in the Next.js app. */
  basePath?: string;
  timeoutMs?: number;
}

export const DEFAULT_BASE_PATH = "/api/tasks";
export const DEFAULT_TIMEOUT_MS = 10_000;

// Request headers passed to the service; everything else (Cookie, Authorization, Host, …) is dropped.
const FORWARDED_REQUEST_HEADERS = ["accept", "content-type", "if-match", "idempotency-key", "x-request-id"];
// Response headers passed back; Location and Link are rewritten to this proxy's paths.
const FORWARDED_RESPONSE_HEADERS = [
  "content-type", "etag", "location", "link", "retry-after", "idempotent-replayed", "x-request-id",
];
// After the base path: nothing, or `/segment` parts of safe characters (`/42`, `/42/complete`).
// Dots and percent-escapes are refused, so no path can climb out of the user's own tasks.
const SUFFIX = /^(\/[A-Za-z0-9_-]+)*\/?$/;

function problem(status: number, code: string, title: string, detail: string): Response {
  return Response.json({ type: "about:blank", title, status, detail, code }, {
    status,
    headers: { "Content-Type": "application/problem+json" },
  });
}

export function createTasksProxy(options: TasksProxyOptions): (request: Request) => Promise<Response> {
  const serviceUrl = options.serviceUrl.replace(/\/+$/, "");
  const basePath = options.basePath ?? DEFAULT_BASE_PATH;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return async function proxy(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const suffix = url.pathname.slice(basePath.length);
    if (!url.pathname.startsWith(basePath) || !SUFFIX.test(suffix)) {
      return problem(404, "not_found", "Not Found", "no such tasks route");
    }
    let identity = await options.authenticate(request.headers, { refresh: false });
    if (identity === null) return problem(401, "not_signed_in", "Unauthorized", "sign in first");

    const hasBody = request.method !== "GET" && request.method !== "HEAD";
    const buffered = hasBody ? await request.arrayBuffer() : undefined;
    const body = buffered && buffered.byteLength > 0 ? buffered : undefined;
    const send = async ({ userId, token }: ProxyIdentity): Promise<Response> => {
      const headers = new Headers({ Authorization: `Bearer ${token}` });
      for (const name of FORWARDED_REQUEST_HEADERS) {
        const value = request.headers.get(name);
        if (value !== null) headers.set(name, value);
      }
      const servicePath = `/api/${encodeURIComponent(userId)}/tasks`;
      try {
        return await fetchImpl(`${serviceUrl}${servicePath}${suffix}${url.search}`, {
          method: request.method,
          headers,
          body,
          redirect: "manual",
          cache: "no-store", // never Next.js's data cache: every answer is one user's
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (error) {
        const timedOut = error instanceof DOMException && error.name === "TimeoutError";
        return timedOut
          ? problem(504, "upstream_timeout", "Gateway Timeout", "the tasks service did not answer in time")
          : problem(502, "upstream_unavailable", "Bad Gateway", "the tasks service cannot be reached");
      }
    };

    let upstream = await send(identity);
    if (upstream.status === 401) {
      // The service refused a reused JWT (its key was removed, the clocks disagree): once more
      // with a new one.
      await upstream.body?.cancel();
      identity = await options.authenticate(request.headers, { refresh: true });
      if (identity === null) return problem(401, "not_signed_in", "Unauthorized", "sign in first");
      upstream = await send(identity);
    }

    const servicePath = `/api/${encodeURIComponent(identity.userId)}/tasks`;
    const out = new Headers();
    for (const name of FORWARDED_RESPONSE_HEADERS) {
      const value = upstream.headers.get(name);
      // The service's URLs name the user (/api/{id}/tasks/…); the browser's name this proxy.
      if (value !== null) out.set(name, value.split(servicePath).join(basePath));
    }
    const noBody = upstream.status === 204 || upstream.status === 304 || request.method === "HEAD";
    return new Response(noBody ? null : await upstream.arrayBuffer(), { status: upstream.status, headers: out });
  };
}
