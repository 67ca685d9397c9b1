// The task fields a person edits, declared once: the create form, the edit form and the list all
// read TASK_FIELDS. A field the service adds is one more entry here, with `parse` / `format` when
// its JSON value is not a plain string, and a line in the Task type of lib/tasks-api.ts.

import type { Task } from "@/lib/tasks-api";

export interface TaskField {
  /** The field's name in the service's JSON. */
  name: keyof Task & string;
  label: string;
  control: "text" | "textarea" | "date" | "select";
  required: boolean;
  maxLength?: number;
  /** For "select": the values, with their labels. */
  options?: readonly { value: string; label: string }[];
  /** Shown under the control (e.g. how to separate labels). */
  hint?: string;
  /** The form's text for a new task (default ""). */
  initial?: string;
  /** The text that means "not set": the list leaves it out (default ""). */
  unset?: string;
  /** The form's text to the JSON value (default: the text, trimmed for one-line controls). */
  parse?: (text: string) => unknown;
  /** The JSON value to the form's text (default: the value as a string, "" for none). */
  format?: (value: unknown) => string;
}

export const TASK_FIELDS: readonly TaskField[] = [
  { name: "title", label: "Title", control: "text", required: true, maxLength: 200 },
  { name: "description", label: "Description", control: "textarea", required: false, maxLength: 1000 },
  {
    name: "due",
    label: "Due date",
    control: "date",
    required: false,
    parse: (text) => text || null,
    // A date-time from another client shows as its (UTC) day; it is sent back only if edited.
    format: (value) => (typeof value === "string" ? value.slice(0, 10) : ""),
  },
  {
    name: "priority",
    label: "Priority",
    control: "select",
    required: false,
    initial: "none",
    unset: "none",
    options: [
      { value: "none", label: "None" },
      { value: "low", label: "Low" },
      { value: "medium", label: "Medium" },
      { value: "high", label: "High" },
    ],
  },
  {
    name: "labels",
    label: "Labels",
    control: "text",
    required: false,
    hint: "separated by commas",
    parse: (text) => text.split(",").map((label) => label.trim()).filter(Boolean),
    format: (value) => (Array.isArray(value) ? value.join(", ") : ""),
  },
];

/** The field whose text names a task in the list and in the buttons' labels. */
export const TITLE_FIELD = "title";

export function formatField(field: TaskField, task: Partial<Task>): string {
  const value = task[field.name];
  if (field.format) return field.format(value);
  return value === undefined || value === null ? "" : String(value);
}

function parseField(field: TaskField, text: string): unknown {
  if (field.parse) return field.parse(text);
  return field.control === "textarea" ? text : text.trim();
}

function textOf(form: FormData, field: TaskField): string {
  return String(form.get(field.name) ?? "");
}

/** The JSON body of a new task from the create form. */
export function readNewTask(form: FormData): Record<string, unknown> {
  return Object.fromEntries(TASK_FIELDS.map((field) => [field.name, parseField(field, textOf(form, field))]));
}

/** Only the fields whose text was changed in the edit form: a PATCH that leaves the others (and
 * concurrent edits of them) alone. */
export function readChanges(task: Task, form: FormData): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const field of TASK_FIELDS) {
    const text = textOf(form, field);
    if (text !== formatField(field, task)) changes[field.name] = parseField(field, text);
  }
  return changes;
}
