"use client";

import type { FormEvent } from "react";

import type { LabelCount, ListQuery, TaskPriority, TaskSort, TaskStatus } from "@/lib/tasks-api";

export type DueFilter = "" | "overdue" | "with" | "without";

/** What the list shows, as the controls hold it ("" is "any"). */
export interface Filters {
  status: TaskStatus;
  sort: TaskSort;
  q: string;
  priority: "" | TaskPriority;
  label: string;
  due: DueFilter;
}

export const INITIAL_FILTERS: Filters = { status: "all", sort: "created_at", q: "", priority: "", label: "", due: "" };

const STATUSES: readonly { value: TaskStatus; label: string }[] = [
  { value: "all", label: "All" },
  { value: "pending", label: "Pending" },
  { value: "completed", label: "Completed" },
];
const SORTS: readonly { value: TaskSort; label: string }[] = [
  { value: "created_at", label: "Oldest first" },
  { value: "-created_at", label: "Newest first" },
  { value: "position", label: "My order" },
  { value: "due", label: "Due date" },
  { value: "priority", label: "Priority" },
];
const PRIORITIES: readonly { value: Filters["priority"]; label: string }[] = [
  { value: "", label: "Any" },
  { value: "high", label: "High" },
  { value: "medium", label: "Medium" },
  { value: "low", label: "Low" },
  { value: "none", label: "None" },
];
const DUES: readonly { value: DueFilter; label: string }[] = [
  { value: "", label: "Any" },
  { value: "overdue", label: "Before today" },
  { value: "with", label: "With a due date" },
  { value: "without", label: "Without a due date" },
];

/** Today in the browser's calendar: the service compares a date as its 00:00 UTC. */
function today(): string {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}-${String(now.getDate()).padStart(2, "0")}`;
}

export function toQuery(filters: Filters): ListQuery {
  const due: ListQuery =
    filters.due === "overdue" ? { due_before: today() }
    : filters.due === "with" ? { has_due: true }
    : filters.due === "without" ? { has_due: false }
    : {};
  return {
    status: filters.status,
    sort: filters.sort,
    q: filters.q || undefined,
    priority: filters.priority || undefined,
    label: filters.label || undefined,
    ...due,
  };
}

export function isFiltered(filters: Filters): boolean {
  return filters.status !== "all" || !!(filters.q || filters.priority || filters.label || filters.due);
}

function Choice<T extends string>(props: {
  label: string;
  value: T;
  options: readonly { value: T; label: string }[];
  onChange: (value: T) => void;
}) {
  return (
    <label>
      {props.label}
      <select value={props.value} onChange={(event) => props.onChange(event.currentTarget.value as T)}>
        {props.options.map(({ value, label }) => (
          <option key={value} value={value}>
            {label}
          </option>
        ))}
      </select>
    </label>
  );
}

/** The list's filters and sort: the selects apply at once, the search on submit. */
export function TaskFilters({ filters, labels, onChange }: {
  filters: Filters;
  labels: readonly LabelCount[];
  onChange: (changes: Partial<Filters>) => void;
}) {
  function search(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    onChange({ q: String(new FormData(event.currentTarget).get("q") ?? "").trim() });
  }
  const labelOptions = [
    { value: "", label: "Any" },
    ...labels.map(({ label, tasks }) => ({ value: label, label: `${label} (${tasks})` })),
  ];
  // A chosen label that no task carries any more stays listed, so the select shows the truth.
  if (filters.label && !labels.some(({ label }) => label === filters.label)) {
    labelOptions.push({ value: filters.label, label: `${filters.label} (0)` });
  }
  return (
    <form role="search" aria-label="Filter tasks" className="filters" onSubmit={search}>
      <Choice label="Show" value={filters.status} options={STATUSES} onChange={(status) => onChange({ status })} />
      <Choice label="Sort" value={filters.sort} options={SORTS} onChange={(sort) => onChange({ sort })} />
      <Choice label="Priority filter" value={filters.priority} options={PRIORITIES} onChange={(priority) => onChange({ priority })} />
      <Choice label="Label filter" value={filters.label} options={labelOptions} onChange={(label) => onChange({ label })} />
      <Choice label="Due filter" value={filters.due} options={DUES} onChange={(due) => onChange({ due })} />
      <label>
        Search
        <input type="search" name="q" defaultValue={filters.q} />
      </label>
      <button type="submit">Search</button>
    </form>
  );
}
