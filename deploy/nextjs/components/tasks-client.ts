// The browser's calls to this app's /api/tasks proxy (app/api/tasks/[[...path]]/route.ts): plain
// fetch with the session cookie, no token in the browser. Problems are thrown as TasksApiError,
// the same class the direct client (lib/tasks-api.ts) throws.

import { followEvents } from "@/lib/event-stream";
import { type LabelCount, listParams, TasksApiError, type ListQuery, type Task, type TaskChange } from "@/lib/tasks-api";

const BASE = "/api/tasks";

async function call(url: string, init: RequestInit = {}): Promise<Response> {
  const headers = { Accept: "application/json", ...(init.body ? { "Content-Type": "application/json" } : {}), ...init.headers };
  const response = await fetch(url, { ...init, headers });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new TasksApiError(response.status, problem, response.headers.get("retry-after"));
  }
  return response;
}

function nextPage(response: Response): string | null {
  // The proxy has already rewritten the service's Link to its own path.
  return /<([^>]*)>;\s*rel="next"/.exec(response.headers.get("link") ?? "")?.[1] ?? null;
}

/** A random Idempotency-Key (crypto.randomUUID exists only on HTTPS and localhost). */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export interface Page {
  tasks: Task[];
  /** The URL of the next page, or null at the end. */
  next: string | null;
}

export const proxyTasks = {
  /** The first page for `query`, or the page at `url` (a Page's `next`). */
  async list(query: ListQuery | string): Promise<Page> {
    let url = query as string;
    if (typeof query !== "string") url = `${BASE}?${listParams(query)}`;
    const response = await call(url);
    return { tasks: (await response.json()) as Task[], next: nextPage(response) };
  },
  /** The task and its ETag, for an update that fails (412) if it changed meanwhile. */
  async get(id: number): Promise<{ task: Task; etag: string | null }> {
    const response = await call(`${BASE}/${id}`);
    return { task: (await response.json()) as Task, etag: response.headers.get("etag") };
  },
  /** The key makes a retried create (a double click, a lost answer) return the first one. */
  async create(fields: Record<string, unknown>, idempotencyKey: string): Promise<Task> {
    const response = await call(BASE, { method: "POST", body: JSON.stringify(fields), headers: { "Idempotency-Key": idempotencyKey } });
    return (await response.json()) as Task;
  },
  async update(id: number, changes: Record<string, unknown>, etag: string | null = null): Promise<Task> {
    const headers: Record<string, string> = etag ? { "If-Match": etag } : {};
    const response = await call(`${BASE}/${id}`, { method: "PATCH", body: JSON.stringify(changes), headers });
    return (await response.json()) as Task;
  },
  async remove(id: number): Promise<void> {
    await call(`${BASE}/${id}`, { method: "DELETE" });
  },
  /** Right after task `after` in the manual order, or at the top with null. */
  async move(id: number, after: number | null): Promise<Task> {
    const response = await call(`${BASE}/${id}/move`, { method: "POST", body: JSON.stringify({ after }) });
    return (await response.json()) as Task;
  },
  /** The user's labels with their task counts (the proxy's /api/labels). */
  async labels(): Promise<LabelCount[]> {
    return (await (await call("/api/labels")).json()) as LabelCount[];
  },
  /** Every change to the user's tasks as it is committed, from any tab or device, until `signal`
   * aborts: the proxy streams /api/tasks/events, and a dropped stream is reopened with
   * Last-Event-ID so nothing is missed. Rejects on a refusal (401 signed out, 410 token expired). */
  follow(options: {
    signal: AbortSignal;
    onChange: (change: TaskChange) => void;
    onOpen?: () => void;
    onClose?: () => void;
  }): Promise<void> {
    return followEvents({
      signal: options.signal,
      onOpen: options.onOpen,
      onClose: options.onClose,
      onEvent: (event) => options.onChange(JSON.parse(event.data ?? "null") as TaskChange),
      open: (lastEventId, signal) =>
        call(`${BASE}/events`, {
          headers: { Accept: "text/event-stream", ...(lastEventId ? { "Last-Event-ID": lastEventId } : {}) },
          signal,
        }),
    });
  },
};
