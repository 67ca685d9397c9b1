// The /api/tasks/* proxy from the Next.js server to the tasks service, as a plain
// (Request) => Promise<Response> function: no Next.js or Better Auth import, so it runs in the
// tests as it runs in app/api/tasks/[[...path]]/route.ts (and app/api/labels/route.ts).
//
// The browser calls this app with its session cookie; the proxy finds the signed-in user,
// obtains a JWT for them and calls the service with `Authorization: Bearer` only:
//   GET /api/tasks/42?x=1  (cookie)  ->  GET {TASKS_API_URL}/api/{session user id}/tasks/42?x=1  (Bearer)
//   GET /api/labels        (cookie)  ->  GET {TASKS_API_URL}/api/{session user id}/labels       (Bearer)
// The user id always comes from the session, never from the browser, and the browser's cookies
// and Authorization header are never sent to the service. Answers are passed back whole, except
// an event stream (GET /api/tasks/events), which is passed on as it arrives.

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
  /** Where the user's labels are served (GET only), also by this proxy. */
  labelsPath?: string;
  /** For the whole answer; for an event stream, until its headers arrive. */
  timeoutMs?: number;
}

export const DEFAULT_BASE_PATH = "/api/tasks";
export const DEFAULT_LABELS_PATH = "/api/labels";
export const DEFAULT_TIMEOUT_MS = 10_000;

// Request headers passed to the service; everything else (Cookie, Authorization, Host, …) is dropped.
const FORWARDED_REQUEST_HEADERS = ["accept", "content-type", "if-match", "idempotency-key", "last-event-id", "x-request-id"];
// Response headers passed back; Location and Link are rewritten to this proxy's paths.
const FORWARDED_RESPONSE_HEADERS = [
  "content-type", "cache-control", "etag", "location", "link", "retry-after", "idempotent-replayed", "x-request-id",
];
// An event stream must reach the browser as it is written: `no-transform` keeps `next start`'s
// gzip (which would hold the events in its buffer) off it, X-Accel-Buffering a front nginx's.
const STREAM_HEADERS = { "cache-control": "no-cache, no-transform", "x-accel-buffering": "no" };
// Node sends a response's headers with its first bytes: an idle stream (no change yet, the next
// heartbeat seconds away) would leave the browser waiting for them. A comment, which every
// event-stream reader skips, sends them at once.
const OPENING = new TextEncoder().encode(": open\n\n");

function openedAtOnce(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let opened = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!opened) {
        opened = true;
        controller.enqueue(OPENING);
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason), // the browser left: so does the call to the service
  });
}
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
  const labelsPath = options.labelsPath ?? DEFAULT_LABELS_PATH;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  return async function proxy(request: Request): Promise<Response> {
    const url = new URL(request.url);
    // The service's path after /api/{user id}: tasks[/…] or labels.
    let resource: string;
    if (url.pathname === labelsPath) {
      if (request.method !== "GET" && request.method !== "HEAD") {
        return problem(405, "method_not_allowed", "Method Not Allowed", "labels are read-only");
      }
      resource = "/labels";
    } else {
      const suffix = url.pathname.slice(basePath.length);
      if (!url.pathname.startsWith(basePath) || !SUFFIX.test(suffix)) {
        return problem(404, "not_found", "Not Found", "no such tasks route");
      }
      resource = `/tasks${suffix}`;
    }
    let identity = await options.authenticate(request.headers, { refresh: false });
    if (identity === null) return problem(401, "not_signed_in", "Unauthorized", "sign in first");

    const hasBody = request.method !== "GET" && request.method !== "HEAD";
    const buffered = hasBody ? await request.arrayBuffer() : undefined;
    const body = buffered && buffered.byteLength > 0 ? buffered : undefined;
    // The browser leaving ends the call to the service (an event stream included); the timeout
    // covers the headers and, except for a stream, the body.
    const abort = new AbortController();
    const upstreamSignal = abort.signal;
    const timer = setTimeout(() => abort.abort(new DOMException("timed out", "TimeoutError")), timeoutMs);
    const leave = () => abort.abort(request.signal.reason);
    request.signal?.addEventListener("abort", leave, { once: true });
    const done = () => {
      clearTimeout(timer);
      request.signal?.removeEventListener("abort", leave);
    };
    const failed = (): Response => {
      done();
      const timedOut = upstreamSignal.reason instanceof DOMException && upstreamSignal.reason.name === "TimeoutError";
      return timedOut
        ? problem(504, "upstream_timeout", "Gateway Timeout", "the tasks service did not answer in time")
        : problem(502, "upstream_unavailable", "Bad Gateway", "the tasks service cannot be reached");
    };

    const send = async ({ userId, token }: ProxyIdentity): Promise<Response> => {
      const headers = new Headers({ Authorization: `Bearer ${token}` });
      for (const name of FORWARDED_REQUEST_HEADERS) {
        const value = request.headers.get(name);
        if (value !== null) headers.set(name, value);
      }
      try {
        return await fetchImpl(`${serviceUrl}/api/${encodeURIComponent(userId)}${resource}${url.search}`, {
          method: request.method,
          headers,
          body,
          redirect: "manual",
          cache: "no-store", // never Next.js's data cache: every answer is one user's
          signal: upstreamSignal,
        });
      } catch {
        return failed();
      }
    };
    let upstream = await send(identity);
    if (upstream.status === 401) {
      // The service refused a reused JWT (its key was removed, the clocks disagree): once more
      // with a new one.
      await upstream.body?.cancel();
      identity = await options.authenticate(request.headers, { refresh: true });
      if (identity === null) {
        done();
        return problem(401, "not_signed_in", "Unauthorized", "sign in first");
      }
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
    if (noBody) {
      done();
      await upstream.body?.cancel();
      return new Response(null, { status: upstream.status, headers: out });
    }
    if (upstream.ok && (upstream.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      clearTimeout(timer); // a stream lasts as long as the browser follows it
      for (const [name, value] of Object.entries(STREAM_HEADERS)) out.set(name, value);
      return new Response(upstream.body && openedAtOnce(upstream.body), { status: upstream.status, headers: out });
    }
    let answer: ArrayBuffer;
    try {
      answer = await upstream.arrayBuffer();
    } catch {
      return failed();
    }
    done();
    return new Response(answer, { status: upstream.status, headers: out });
  };
}
