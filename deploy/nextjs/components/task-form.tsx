"use client";

import { type FormEvent, useId, useState } from "react";

import type { Task } from "@/lib/tasks-api";

import { formatField, TASK_FIELDS, type TaskField } from "./task-fields";
import { useHydrated } from "./use-hydrated";

interface TaskFormProps {
  /** The accessible name of the form, e.g. "New task" or `Edit "Buy milk"`. */
  label: string;
  submitLabel: string;
  /** The task being edited; none for a new one. */
  task?: Task;
  /** Resolves true when saved; the form empties itself after a create. */
  onSubmit: (form: FormData) => Promise<boolean>;
  onCancel?: () => void;
}

function Control({ field, id, value }: { field: TaskField; id: string; value: string }) {
  const hintId = field.hint ? `${id}-hint` : undefined;
  const common = { id, name: field.name, required: field.required, defaultValue: value, "aria-describedby": hintId };
  switch (field.control) {
    case "textarea":
      return <textarea rows={2} maxLength={field.maxLength} {...common} />;
    case "select":
      return (
        <select {...common}>
          {field.options?.map((option) => (
            <option key={option.value} value={option.value}>
              {option.label}
            </option>
          ))}
        </select>
      );
    default:
      return <input type={field.control} maxLength={field.maxLength} {...common} />;
  }
}

/** The task's editable fields (TASK_FIELDS) as one form, for creating and for editing. */
export function TaskForm({ label, submitLabel, task, onSubmit, onCancel }: TaskFormProps) {
  const hydrated = useHydrated();
  const formId = useId();
  const [pending, setPending] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    setPending(true);
    const saved = await onSubmit(new FormData(form));
    setPending(false);
    if (saved && !task) form.reset();
  }

  return (
    <form onSubmit={submit} aria-label={label}>
      <fieldset>
        <legend>{label}</legend>
        {TASK_FIELDS.map((field) => {
          // Labelled by id, not by wrapping: a wrapping label would fold the control's value
          // (a select's chosen option) into its accessible name.
          const id = `${formId}-${field.name}`;
          return (
            <div key={field.name}>
              <label htmlFor={id}>{field.label}</label>
              <Control field={field} id={id} value={task ? formatField(field, task) : (field.initial ?? "")} />
              {field.hint && <small id={`${id}-hint`}>{field.hint}</small>}
            </div>
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
