"use client";

import { type FormEvent, useState } from "react";

import type { Task } from "@/lib/tasks-api";

import { formatField, readTaskFields, TASK_FIELDS } from "./task-fields";
import { useHydrated } from "./use-hydrated";

interface TaskFormProps {
  /** The accessible name of the form, e.g. "New task" or `Edit "Buy milk"`. */
  label: string;
  submitLabel: string;
  /** The task being edited; none for a new one. */
  task?: Task;
  /** Resolves when saved; the form empties itself after a create. */
  onSubmit: (fields: Record<string, unknown>) => Promise<boolean>;
  onCancel?: () => void;
}

/** The task's editable fields (TASK_FIELDS) as one form, for creating and for editing. */
export function TaskForm({ label, submitLabel, task, onSubmit, onCancel }: TaskFormProps) {
  const hydrated = useHydrated();
  const [pending, setPending] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    setPending(true);
    const saved = await onSubmit(readTaskFields(new FormData(form)));
    setPending(false);
    if (saved && !task) form.reset();
  }

  return (
    <form onSubmit={submit} aria-label={label}>
      <fieldset>
        <legend>{label}</legend>
        {TASK_FIELDS.map((field) => {
          const common = {
            name: field.name,
            required: field.required,
            maxLength: field.maxLength,
            defaultValue: task ? formatField(field, task) : "",
          };
          return (
            <label key={field.name}>
              {field.label}
              {field.control === "textarea" ? <textarea rows={2} {...common} /> : <input type="text" {...common} />}
            </label>
          );
        })}
        <div className="actions">
          <button type="submit" disabled={!hydrated || pending}>
            {submitLabel}
          </button>
          {onCancel && (
            <button type="button" onClick={onCancel}>
              Cancel
            </button>
          )}
        </div>
      </fieldset>
    </form>
  );
}
