// A typed client of the tasks service that authenticates with Better Auth JWTs.
//
// Every call sends `Authorization: Bearer <jwt>`. The JWT comes from `fetchToken` (in the browser
// `fetchJwt` from auth-client.ts, i.e. `authClient.token()`), is cached and refreshed shortly
// before `exp` (token-cache.ts), and a 401 is retried once with a fresh token (the key may have
// rotated, or the clock here may be off). The user id in the path is the token's `sub`, so the
// client can never ask for someone else's tasks.
//
// Called from the browser, the service must list this app's origin in CORS_ORIGINS. Without
// that, call the Next.js proxy (app/api/tasks/[[...path]]/route.ts) with plain fetch instead.

import { followEvents } from "./event-stream";
import { type ChangesPage, type LabelCount, type ListQuery, listParams, type Task, type TaskChange, TasksApiError } from "./tasks-model";
import { readUnverifiedClaims, TokenCache } from "./token-cache";

export * from "./tasks-model";

/** A task with its ETag, to send back in `ifMatch` for a safe update. */
export interface Versioned {
  task: Task;
  etag: string;
}

export interface EventsOptions {
  /** A sync token to start after (a `next` of `changes`); omitted: every task first, as upserts. */
  since?: string;
  /** Ends the stream; `events` resolves then. */
  signal: AbortSignal;
  /** Each change, with the sync token just after it: keep it to resume from there. */
  onChange: (change: TaskChange, token: string) => void;
  /** Called once each (re)connection is open. */
  onOpen?: () => void;
  /** Milliseconds before reconnecting when the stream ends or the network fails (default 1000). */
  retryMs?: number;
}

export interface TasksApiOptions {
  /** The tasks service, e.g. "https://tasks.example.com" (TASKS_API_URL). */
  baseUrl: string;
  /** A fresh Better Auth JWT for the signed-in user, e.g. `fetchJwt` (auth-client.ts). */
  fetchToken: () => Promise<string>;
  fetch?: typeof fetch;
  /** Milliseconds since the epoch (default Date.now); tests move it. */
  now?: () => number;
  refreshMarginSeconds?: number;
}

interface Call {
  method: string;
  resource?: "tasks" | "labels"; // /api/{userId}/<resource>, default tasks
  path?: string; // after /api/{userId}/<resource>
  query?: URLSearchParams;
  signal?: AbortSignal;
  body?: unknown;
  headers?: Record<string, string>;
}

export function createTasksApi(options: TasksApiOptions) {
  if (!options.baseUrl) {
    // Typically NEXT_PUBLIC_TASKS_API_URL set only at run time: Next.js inlines it at build time.
    throw new Error("createTasksApi: baseUrl is empty (NEXT_PUBLIC_TASKS_API_URL must be set when `next build` runs)");
  }
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const tokens = new TokenCache(options.fetchToken, { now: options.now, refreshMarginSeconds: options.refreshMarginSeconds });

  async function send(call: Call, token: string): Promise<Response> {
    const userId = readUnverifiedClaims(token).sub;
    if (!userId) throw new Error("the Better Auth token has no sub claim");
    const url = new URL(`${baseUrl}/api/${encodeURIComponent(userId)}/${call.resource ?? "tasks"}${call.path ?? ""}`);
    url.search = call.query?.toString() ?? "";
    const headers: Record<string, string> = { Accept: "application/json", Authorization: `Bearer ${token}`, ...call.headers };
    if (call.body !== undefined) headers["Content-Type"] = "application/json";
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    return fetchImpl(url, { method: call.method, headers, body, signal: call.signal });
  }

  /** One call: Bearer token from the cache, one retry with a fresh token on 401, problems thrown. */
  async function request(call: Call): Promise<Response> {
    let token = await tokens.get();
    let response = await send(call, token);
    if (response.status === 401) {
      await response.body?.cancel();
      tokens.invalidate(token);
      token = await tokens.get();
      response = await send(call, token);
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      throw new TasksApiError(response.status, problem, response.headers.get("retry-after"));
    }
    return response;
  }

  async function versioned(call: Call): Promise<Versioned> {
    const response = await request(call);
    return { task: (await response.json()) as Task, etag: response.headers.get("etag") ?? "" };
  }

  const ifMatch = (etag?: string): Record<string, string> => (etag ? { "If-Match": etag } : {});

  return {
    /** One page; `nextCursor` (from the Link rel="next" header) fetches the next, null at the end. */
    async list(query: ListQuery = {}): Promise<{ tasks: Task[]; nextCursor: string | null }> {
      const response = await request({ method: "GET", query: listParams(query) });
      const next = /<([^>]*)>;\s*rel="next"/.exec(response.headers.get("link") ?? "");
      const nextCursor = next ? new URL(next[1], baseUrl).searchParams.get("cursor") : null;
      return { tasks: (await response.json()) as Task[], nextCursor };
    },
    /** With `idempotencyKey`, a retried create returns the first result instead of a duplicate. */
    create(
      input: { title: string; description?: string } & Partial<Pick<Task, "due" | "priority" | "labels">>,
      opts: { idempotencyKey?: string } = {},
    ) {
      const headers: Record<string, string> = opts.idempotencyKey ? { "Idempotency-Key": opts.idempotencyKey } : {};
      return versioned({ method: "POST", body: input, headers });
    },
    get(id: number) {
      return versioned({ method: "GET", path: `/${id}` });
    },
    /** Full update; with `ifMatch` a concurrent change makes it fail with 412 precondition_failed. */
    replace(
      id: number,
      input: Pick<Task, "title" | "description" | "completed"> & Partial<Pick<Task, "due" | "priority" | "labels">>,
      opts: { ifMatch?: string } = {},
    ) {
      return versioned({ method: "PUT", path: `/${id}`, body: input, headers: ifMatch(opts.ifMatch) });
    },
    update(
      id: number,
      input: Partial<Pick<Task, "title" | "description" | "completed" | "due" | "priority" | "labels">>,
      opts: { ifMatch?: string } = {},
    ) {
      return versioned({ method: "PATCH", path: `/${id}`, body: input, headers: ifMatch(opts.ifMatch) });
    },
    toggleComplete(id: number, opts: { ifMatch?: string } = {}) {
      return versioned({ method: "PATCH", path: `/${id}/complete`, headers: ifMatch(opts.ifMatch) });
    },
    async remove(id: number, opts: { ifMatch?: string } = {}): Promise<void> {
      await request({ method: "DELETE", path: `/${id}`, headers: ifMatch(opts.ifMatch) });
    },
    /** Puts the task right after task `after` in the manual order, or at the top with null. */
    move(id: number, after: number | null, opts: { ifMatch?: string } = {}) {
      return versioned({ method: "POST", path: `/${id}/move`, body: { after }, headers: ifMatch(opts.ifMatch) });
    },
    /** The user's labels with their task counts, ordered by label. */
    async labels(): Promise<LabelCount[]> {
      return (await (await request({ method: "GET", resource: "labels" })).json()) as LabelCount[];
    },
    /** One page of the change feed after `since` (from the start without it). A token older than
     * the service's retention is a TasksApiError 410 `sync_token_expired`: sync again without it. */
    async changes(opts: { since?: string; limit?: number } = {}): Promise<ChangesPage> {
      const query = listParams({ since: opts.since, limit: opts.limit });
      return (await (await request({ method: "GET", path: "/changes", query })).json()) as ChangesPage;
    },
    /** Follows the live change feed until `signal` aborts: each change in order, reconnecting
     * with Last-Event-ID (and a fresh token) when the stream ends or the network fails, so no
     * change is missed. Rejects on a refusal, such as 410 `sync_token_expired`. */
    events(opts: EventsOptions): Promise<void> {
      return followEvents({
        signal: opts.signal,
        retryMs: opts.retryMs,
        onOpen: opts.onOpen,
        open: (lastEventId, signal) =>
          request({
            method: "GET",
            path: "/events",
            query: listParams({ since: opts.since }),
            headers: { Accept: "text/event-stream", ...(lastEventId ? { "Last-Event-ID": lastEventId } : {}) },
            signal,
          }),
        onEvent: (event) => opts.onChange(JSON.parse(event.data ?? "null") as TaskChange, event.id ?? ""),
      });
    },
    /** Drop the cached token: call it on sign-out (or when another user signs in). */
    clearToken(): void {
      tokens.invalidate();
    },
  };
}

export type TasksApi = ReturnType<typeof createTasksApi>;
