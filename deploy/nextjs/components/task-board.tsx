"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import { type LabelCount, type Task, TasksApiError } from "@/lib/tasks-api";

import { readChanges, readNewTask } from "./task-fields";
import { type Filters, INITIAL_FILTERS, isFiltered, TaskFilters, toQuery } from "./task-filters";
import { TaskForm } from "./task-form";
import { TaskItem } from "./task-item";
import { newIdempotencyKey, proxyTasks } from "./tasks-client";
import { useLiveUpdates } from "./use-live-updates";

const LIVE_TEXT = { connecting: "connecting…", live: "on", off: "off (reload the page to retry)" } as const;

/** What a person should read when a call fails: the service's own detail where it has one. */
function describe(error: unknown): string {
  if (error instanceof TasksApiError) {
    if (error.status === 401) return "Your session has ended: sign in again.";
    if (error.status === 412) return "This task was changed meanwhile; the list shows it as it is now.";
    return error.detail ?? error.title;
  }
  return "The tasks could not be reached; try again.";
}

/** The signed-in user's tasks through the /api/tasks proxy: filter, sort, create, complete, edit,
 * delete, reorder; reloaded whenever the change stream reports a change (from any tab). */
export function TaskBoard() {
  const [filters, setFilters] = useState<Filters>(INITIAL_FILTERS);
  const [labels, setLabels] = useState<LabelCount[]>([]);
  const [tasks, setTasks] = useState<Task[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [editing, setEditing] = useState<{ id: number; etag: string | null; task: Task } | null>(null);
  const latest = useRef(0); // the newest list request: answers to older ones are dropped
  const changing = useRef(0); // changes of this tab under way: each reloads the list when done

  const load = useCallback(async () => {
    const request = ++latest.current;
    setLoading(true);
    try {
      const [page, labelCounts] = await Promise.all([proxyTasks.list(toQuery(filters)), proxyTasks.labels()]);
      if (request !== latest.current) return;
      setTasks(page.tasks);
      setNext(page.next);
      setLabels(labelCounts);
    } catch (caught) {
      if (request === latest.current) setError(describe(caught));
    } finally {
      if (request === latest.current) setLoading(false);
    }
  }, [filters]);

  useEffect(() => {
    void load();
  }, [load]);

  // Another tab's (or device's) change, and the echo of this tab's own: the list as it is now.
  // Not while this tab changes something: that change's own reload comes after it anyway.
  const live = useLiveUpdates(() => {
    if (changing.current === 0) void load();
  });

  /** Runs a change, shows its error if any, and reloads the list (filters may hide the result). */
  async function change(action: () => Promise<unknown>): Promise<boolean> {
    setError(null);
    latest.current++; // a list read before this change must not overwrite what it shows
    changing.current++;
    let ok = true;
    try {
      await action();
    } catch (caught) {
      setError(describe(caught));
      ok = false;
    } finally {
      changing.current--;
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

  /** In "My order": up puts the task after the one two above it (or at the top), down after
   * the one below it. Among the tasks shown, so with a filter on it moves past those only. */
  function moveTarget(index: number, direction: "up" | "down"): number | null | undefined {
    if (!tasks || filters.sort !== "position") return undefined;
    if (direction === "up") return index === 0 ? undefined : index === 1 ? null : tasks[index - 2].id;
    return index + 1 < tasks.length ? tasks[index + 1].id : undefined;
  }

  function mover(task: Task, index: number, direction: "up" | "down"): (() => void) | undefined {
    const after = moveTarget(index, direction);
    return after === undefined ? undefined : () => void change(() => proxyTasks.move(task.id, after));
  }

  return (
    <>
      <TaskForm
        label="New task"
        submitLabel="Add task"
        onSubmit={(form) => change(() => proxyTasks.create(readNewTask(form), newIdempotencyKey()))}
      />

      <TaskFilters filters={filters} labels={labels} onChange={(changes) => setFilters((now) => ({ ...now, ...changes }))} />
      <p className="live">Live updates: {LIVE_TEXT[live]}</p>

      {error && <p role="alert">{error}</p>}

      <section aria-label="Tasks" aria-busy={loading}>
        {tasks === null ? (
          <p role="status">Loading…</p>
        ) : tasks.length === 0 ? (
          <p role="status">{isFiltered(filters) ? "No tasks match." : "No tasks yet."}</p>
        ) : (
          <ul className="tasks">
            {tasks.map((task, index) => (
              <TaskItem
                key={task.id}
                task={task}
                editing={editing?.id === task.id}
                onToggle={(completed) => toggle(task.id, completed)}
                onEdit={() => void startEditing(task.id)}
                onSave={save}
                onCancel={() => setEditing(null)}
                onDelete={() => void change(() => proxyTasks.remove(task.id))}
                onMoveUp={mover(task, index, "up")}
                onMoveDown={mover(task, index, "down")}
                reorderable={filters.sort === "position"}
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
