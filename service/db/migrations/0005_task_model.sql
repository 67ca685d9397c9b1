-- The task model: due dates, priority, labels, manual order and completion time.
-- Existing rows keep every value they had; the new columns get their defaults, except
-- `position` (newest first, the list's default order) and `completed_at` (see below).

CREATE TYPE task_priority AS ENUM ('none', 'low', 'medium', 'high');  -- in this order: `high` sorts last ascending

-- The API's `due` text, from the sort key: an all-day date as YYYY-MM-DD, a date-time as the UTC
-- instant in the form PostgreSQL writes timestamps into JSON (as created_at), suffixed +00:00.
-- IMMUTABLE (a generated column needs it) holds: the zone is fixed and the formats use no locale.
-- PL/pgSQL, not SQL: a SQL function in a generated column is planned again by every INSERT
-- (~40 µs of a create's PostgreSQL CPU); PL/pgSQL keeps its plan for the session.
CREATE FUNCTION task_due_text(due_at timestamptz, all_day boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN CASE
        WHEN NOT isfinite(due_at) THEN NULL
        WHEN all_day THEN to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
        ELSE (to_json(due_at AT TIME ZONE 'UTC') #>> '{}') || '+00:00'
    END;
END
$$;

ALTER TABLE tasks
    -- The due sort and filter key: the instant, an all-day date as its 00:00 UTC, and
    -- 'infinity' for no due date, so "no due date last" is the index's own order.
    ADD COLUMN due_at timestamptz NOT NULL DEFAULT 'infinity',
    ADD COLUMN due_all_day boolean NOT NULL DEFAULT false,
    ADD COLUMN due text GENERATED ALWAYS AS (task_due_text(due_at, due_all_day)) STORED,
    ADD COLUMN priority task_priority NOT NULL DEFAULT 'none',
    ADD COLUMN labels text[] NOT NULL DEFAULT '{}',
    -- Manual order, ascending. Gapped keys within JavaScript's safe integers (the JSON number
    -- stays exact in a browser); the service keeps them apart, see service/tasks/positions.py.
    ADD COLUMN position bigint NOT NULL DEFAULT 0,
    ADD COLUMN completed_at timestamptz,
    ADD CONSTRAINT tasks_all_day_is_utc_midnight
        CHECK (NOT due_all_day OR (isfinite(due_at) AND (due_at AT TIME ZONE 'UTC')::time = '00:00')),
    ADD CONSTRAINT tasks_labels_bounded
        CHECK (cardinality(labels) <= 20 AND array_position(labels, NULL) IS NULL),
    ADD CONSTRAINT tasks_position_is_safe_integer
        CHECK (position BETWEEN -9007199254740991 AND 9007199254740991);

-- Manual order of existing tasks: newest first, 2^20 apart (the service's gap).
UPDATE tasks SET position = ranked.position
FROM (
    SELECT user_id, id, row_number() OVER (PARTITION BY user_id ORDER BY created_at DESC, id DESC) * 1048576 AS position
    FROM tasks
) AS ranked
WHERE tasks.user_id = ranked.user_id AND tasks.id = ranked.id;

-- A task completed before this migration: its last write is when it was completed, at the latest.
UPDATE tasks SET completed_at = updated_at WHERE completed;
ALTER TABLE tasks ADD CONSTRAINT tasks_completed_at_iff_completed CHECK ((completed_at IS NOT NULL) = completed);

-- The list sorts by due date and by position as index range scans, with and without the status
-- filter, like the other sorts (migration 0001). Sorting by priority reads the user's rows and
-- sorts them: bounded by the per-user quota, and not worth two more indexes on every write.
CREATE INDEX tasks_by_due          ON tasks (user_id, due_at, id);
CREATE INDEX tasks_by_position     ON tasks (user_id, position, id);
CREATE INDEX tasks_status_due      ON tasks (user_id, completed, due_at, id);
CREATE INDEX tasks_status_position ON tasks (user_id, completed, position, id);

-- The response shape grows with the model: the attributes are appended, in this order.
ALTER TYPE task_document
    ADD ATTRIBUTE due text,
    ADD ATTRIBUTE priority task_priority,
    ADD ATTRIBUTE labels text[],
    ADD ATTRIBUTE position bigint,
    ADD ATTRIBUTE completed_at timestamptz;
