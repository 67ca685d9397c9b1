// The task fields a person edits, declared once: the create form, the edit form and the list all
// read TASK_FIELDS. A field the service adds (a due date, a priority, labels) is one more entry
// here, with `parse` / `format` when its JSON value is not a plain string, and a line in the Task
// type of lib/tasks-api.ts.

import type { Task } from "@/lib/tasks-api";

export interface TaskField {
  /** The field's name in the service's JSON. */
  name: keyof Task & string;
  label: string;
  control: "text" | "textarea";
  required: boolean;
  maxLength: number;
  /** The form's text to the JSON value (default: the text itself). */
  parse?: (text: string) => unknown;
  /** The JSON value to the form's text (default: the value as a string, "" for none). */
  format?: (value: unknown) => string;
}

export const TASK_FIELDS: readonly TaskField[] = [
  { name: "title", label: "Title", control: "text", required: true, maxLength: 200 },
  { name: "description", label: "Description", control: "textarea", required: false, maxLength: 1000 },
];

/** The field whose text names a task in the list and in the buttons' labels. */
export const TITLE_FIELD = "title";

export function formatField(field: TaskField, task: Partial<Task>): string {
  const value = task[field.name];
  if (field.format) return field.format(value);
  return value === undefined || value === null ? "" : String(value);
}

/** The JSON body for the service from a create or edit form. */
export function readTaskFields(form: FormData): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const field of TASK_FIELDS) {
    const text = String(form.get(field.name) ?? "");
    body[field.name] = field.parse ? field.parse(text) : field.control === "text" ? text.trim() : text;
  }
  return body;
}

/** Only what changed: a PATCH that leaves the other fields (and concurrent edits of them) alone. */
export function changedFields(task: Task, edited: Record<string, unknown>): Record<string, unknown> {
  const changes: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(edited)) {
    if (JSON.stringify(task[name as keyof Task]) !== JSON.stringify(value)) changes[name] = value;
  }
  return changes;
}
