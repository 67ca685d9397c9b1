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

import { readUnverifiedClaims, TokenCache } from "./token-cache";

export type TaskPriority = "none" | "low" | "medium" | "high";

export interface Task {
  id: number;
  user_id: string;
  title: string;
  description: string;
  completed: boolean;
  /** null, an all-day date "YYYY-MM-DD", or a date-time (returned in UTC). */
  due: string | null;
  priority: TaskPriority;
  /** At most 20; case variants of a label are one label. */
  labels: string[];
  /** Manual order, ascending from the top (change it with PATCH …/move). */
  position: number;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

export type TaskStatus = "all" | "pending" | "completed";
export type TaskSort = "created_at" | "-created_at" | "updated_at" | "-updated_at" | "title" | "-title";

export interface ListQuery {
  status?: TaskStatus;
  sort?: TaskSort;
  q?: string;
  limit?: number;
  cursor?: string;
}

/** A task with its ETag, to send back in `ifMatch` for a safe update. */
export interface Versioned {
  task: Task;
  etag: string;
}

/** An RFC 9457 problem from the service, e.g. status 412 / code "precondition_failed". */
export class TasksApiError extends Error {
  readonly status: number;
  readonly code: string; // the service's stable code: task_not_found, validation_failed, …
  readonly title: string;
  readonly detail: string | undefined;
  readonly errors: unknown; // with validation_failed: one entry per invalid field
  readonly retryAfterSeconds: number | undefined; // with 503

  constructor(status: number, problem: Record<string, unknown>, retryAfter: string | null) {
    const title = typeof problem.title === "string" ? problem.title : `HTTP ${status}`;
    const detail = typeof problem.detail === "string" ? problem.detail : undefined;
    super(detail ? `${title}: ${detail}` : title);
    this.name = "TasksApiError";
    this.status = status;
    this.code = typeof problem.code === "string" ? problem.code : "http_error";
    this.title = title;
    this.detail = detail;
    this.errors = problem.errors;
    const seconds = retryAfter === null ? NaN : Number(retryAfter);
    this.retryAfterSeconds = Number.isFinite(seconds) ? seconds : undefined;
  }
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
  path?: string; // after /api/{userId}/tasks
  query?: ListQuery;
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
    const url = new URL(`${baseUrl}/api/${encodeURIComponent(userId)}/tasks${call.path ?? ""}`);
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { Accept: "application/json", Authorization: `Bearer ${token}`, ...call.headers };
    if (call.body !== undefined) headers["Content-Type"] = "application/json";
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    return fetchImpl(url, { method: call.method, headers, body });
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
      const response = await request({ method: "GET", query });
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
    /** Drop the cached token: call it on sign-out (or when another user signs in). */
    clearToken(): void {
      tokens.invalidate();
    },
  };
}

export type TasksApi = ReturnType<typeof createTasksApi>;
