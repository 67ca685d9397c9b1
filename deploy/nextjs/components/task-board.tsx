"use client";

import { type FormEvent, useCallback, useEffect, useRef, useState } from "react";

import { type Task, TasksApiError, type TaskStatus } from "@/lib/tasks-api";

import { readChanges, readNewTask } from "./task-fields";
import { TaskForm } from "./task-form";
import { TaskItem } from "./task-item";
import { newIdempotencyKey, proxyTasks } from "./tasks-client";

const STATUSES: { value: TaskStatus; label: string }[] = [
  { value: "all", label: "All" },
  { value: "pending", label: "Pending" },
  { value: "completed", label: "Completed" },
];

/** What a person should read when a call fails: the service's own detail where it has one. */
function describe(error: unknown): string {
  if (error instanceof TasksApiError) {
    if (error.status === 401) return "Your session has ended: sign in again.";
    if (error.status === 412) return "This task was changed meanwhile; the list shows it as it is now.";
    return error.detail ?? error.title;
  }
  return "The tasks could not be reached; try again.";
}

/** The signed-in user's tasks through the /api/tasks proxy: filter, create, complete, edit, delete. */
export function TaskBoard() {
  const [status, setStatus] = useState<TaskStatus>("all");
  const [search, setSearch] = useState("");
  const [tasks, setTasks] = useState<Task[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<{ id: number; etag: string | null; task: Task } | null>(null);
  const latest = useRef(0); // the newest list request: answers to older ones are dropped

  const load = useCallback(async () => {
    const request = ++latest.current;
    setLoading(true);
    try {
      const page = await proxyTasks.list({ status, q: search || undefined, sort: "created_at" });
      if (request !== latest.current) return;
      setTasks(page.tasks);
      setNext(page.next);
    } catch (caught) {
      if (request === latest.current) setError(describe(caught));
    } finally {
      if (request === latest.current) setLoading(false);
    }
  }, [status, search]);

  useEffect(() => {
    void load();
  }, [load]);

  /** Runs a change, shows its error if any, and reloads the list (filters may hide the result). */
  async function change(action: () => Promise<unknown>): Promise<boolean> {
    setError(null);
    let ok = true;
    try {
      await action();
    } catch (caught) {
      setError(describe(caught));
      ok = false;
    }
    await load();
    return ok;
  }

  /** Shown at once (the checkbox follows the click), then saved; the reload shows the outcome. */
  function toggle(id: number, completed: boolean) {
    setTasks((shown) => shown?.map((task) => (task.id === id ? { ...task, completed } : task)) ?? null);
    void change(() => proxyTasks.update(id, { completed }));
  }

  async function loadMore() {
    if (!next) return;
    try {
      const page = await proxyTasks.list(next);
      setTasks((shown) => [...(shown ?? []), ...page.tasks]);
      setNext(page.next);
    } catch (caught) {
      setError(describe(caught));
    }
  }

  async function startEditing(id: number) {
    setError(null);
    try {
      const { task, etag } = await proxyTasks.get(id); // its current state and ETag
      setEditing({ id, etag, task });
    } catch (caught) {
      setError(describe(caught));
      await load();
    }
  }

  async function save(form: FormData): Promise<boolean> {
    if (!editing) return false;
    const changes = readChanges(editing.task, form);
    const saved =
      Object.keys(changes).length === 0 || (await change(() => proxyTasks.update(editing.id, changes, editing.etag)));
    setEditing(null);
    return saved;
  }

  function applySearch(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    setSearch(String(new FormData(event.currentTarget).get("q") ?? "").trim());
  }

  return (
    <>
      <TaskForm
        label="New task"
        submitLabel="Add task"
        onSubmit={(form) => change(() => proxyTasks.create(readNewTask(form), newIdempotencyKey()))}
      />

      <form role="search" aria-label="Filter tasks" className="filters" onSubmit={applySearch}>
        <label>
          Show
          <select value={status} onChange={(event) => setStatus(event.currentTarget.value as TaskStatus)}>
            {STATUSES.map(({ value, label }) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Search
          <input type="search" name="q" defaultValue={search} />
        </label>
        <button type="submit">Search</button>
      </form>

      {error && <p role="alert">{error}</p>}

      <section aria-label="Tasks" aria-busy={loading}>
        {tasks === null ? (
          <p role="status">Loading…</p>
        ) : tasks.length === 0 ? (
          <p role="status">{status === "all" && !search ? "No tasks yet." : "No tasks match."}</p>
        ) : (
          <ul className="tasks">
            {tasks.map((task) => (
              <TaskItem
                key={task.id}
                task={task}
                editing={editing?.id === task.id}
                onToggle={(completed) => toggle(task.id, completed)}
                onEdit={() => void startEditing(task.id)}
                onSave={save}
                onCancel={() => setEditing(null)}
                onDelete={() => void change(() => proxyTasks.remove(task.id))}
              />
            ))}
          </ul>
        )}
        {next && (
          <button type="button" onClick={() => void loadMore()}>
            Load more
          </button>
        )}
      </section>
    </>
  );
}
