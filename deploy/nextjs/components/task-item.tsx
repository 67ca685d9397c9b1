"use client";

import type { Task } from "@/lib/tasks-api";

import { formatField, TASK_FIELDS, TITLE_FIELD } from "./task-fields";
import { TaskForm } from "./task-form";

interface TaskItemProps {
  task: Task;
  editing: boolean;
  onToggle: (completed: boolean) => void;
  onEdit: () => void;
  onSave: (form: FormData) => Promise<boolean>;
  onCancel: () => void;
  onDelete: () => void;
  /** In the manual order: the move buttons are shown, each disabled when it has nowhere to go. */
  reorderable: boolean;
  onMoveUp?: () => void;
  onMoveDown?: () => void;
}

/** One task: a checkbox for done, its fields, Move up/down (in the manual order), Edit and
 * Delete; or, while edited, its form. */
export function TaskItem(props: TaskItemProps) {
  const { task, editing, onToggle, onEdit, onSave, onCancel, onDelete, reorderable, onMoveUp, onMoveDown } = props;
  const title = task.title;
  if (editing) {
    return (
      <li className="task">
        <TaskForm label={`Edit "${title}"`} submitLabel="Save" task={task} onSubmit={onSave} onCancel={onCancel} />
      </li>
    );
  }
  const details = TASK_FIELDS.filter((field) => field.name !== TITLE_FIELD)
    .map((field) => ({ field, text: formatField(field, task) }))
    .filter(({ field, text }) => text !== (field.unset ?? ""));
  return (
    <li className={task.completed ? "task done" : "task"} aria-label={title}>
      <div className="task-head">
        <input
          type="checkbox"
          aria-label={`Done: ${title}`}
          checked={task.completed}
          onChange={(event) => onToggle(event.currentTarget.checked)}
        />
        <span className="title">{title}</span>
        <span className="actions">
          {reorderable && (
            <>
              <button type="button" onClick={onMoveUp} disabled={!onMoveUp} aria-label={`Move "${title}" up`}>
                ↑
              </button>
              <button type="button" onClick={onMoveDown} disabled={!onMoveDown} aria-label={`Move "${title}" down`}>
                ↓
              </button>
            </>
          )}
          <button type="button" onClick={onEdit} aria-label={`Edit "${title}"`}>
            Edit
          </button>
          <button type="button" onClick={onDelete} aria-label={`Delete "${title}"`}>
            Delete
          </button>
        </span>
      </div>
      {details.length > 0 && (
        <dl>
          {details.map(({ field, text }) => (
            <div key={field.name}>
              <dt>{field.label}</dt>
              <dd>{field.options?.find((option) => option.value === text)?.label ?? text}</dd>
            </div>
          ))}
        </dl>
      )}
    </li>
  );
}
