// The tasks service's data as TypeScript types, its problem details as an Error, and its list
// query string: shared by the direct client (tasks-api.ts) and the browser's proxy calls.

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
  /** Manual order, ascending from the top (change it with `move`). */
  position: number;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}

export type TaskStatus = "all" | "pending" | "completed";
export type TaskSort =
  | "created_at" | "-created_at" | "updated_at" | "-updated_at" | "title" | "-title"
  | "due" // earliest first, tasks without a due date last
  | "priority" // high first
  | "position"; // the manual order

export interface ListQuery {
  status?: TaskStatus;
  sort?: TaskSort;
  q?: string;
  /** Due at or after (inclusive): a date ("2026-05-01", its 00:00 UTC) or a date-time with an offset. */
  due_after?: string;
  /** Due strictly before: the same forms. */
  due_before?: string;
  has_due?: boolean;
  /** Any of these. */
  priority?: TaskPriority | TaskPriority[];
  /** All of these. */
  label?: string | string[];
  limit?: number;
  cursor?: string;
}

/** One of the user's labels and how many of their tasks carry it. */
export interface LabelCount {
  label: string;
  tasks: number;
}

/** One entry of the change feed (`changes`, `events`), in commit order. */
export type TaskChange = { op: "upsert"; task: Task } | { op: "delete"; id: number };

export interface ChangesPage {
  changes: TaskChange[];
  /** The sync token to ask with next time (also a valid `since` for `events`). */
  next: string;
  /** More changes are waiting: ask again now. */
  more: boolean;
}

/** A query string (of a ListQuery, or of `since`/`limit`): repeated parameters (`priority`,
 * `label`) once per value; undefined and "" left out. */
export function listParams(query: ListQuery | { since?: string; limit?: number }): URLSearchParams {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== "") params.append(name, String(one));
    }
  }
  return params;
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
