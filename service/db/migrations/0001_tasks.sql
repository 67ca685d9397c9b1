-- Tasks, owned by a Better Auth user id. The primary key leads with user_id so the table can be
-- distributed by user_id (Citus) and every statement is a single-shard router query.
CREATE TABLE tasks (
    user_id     text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 255),
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    title       text        NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description text        NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    completed   boolean     NOT NULL DEFAULT false,
    version     integer     NOT NULL DEFAULT 1,  -- bumped by every write; the ETag
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);

-- One index per sort key, with and without the status filter, each ending in id for keyset
-- pagination: every list query is an index range scan that stops after `limit` rows, whatever
-- the direction (btree scans both ways) and however many tasks the user has.
CREATE INDEX tasks_by_created    ON tasks (user_id, created_at, id);
CREATE INDEX tasks_by_updated    ON tasks (user_id, updated_at, id);
CREATE INDEX tasks_by_title      ON tasks (user_id, title, id);
CREATE INDEX tasks_status_created ON tasks (user_id, completed, created_at, id);
CREATE INDEX tasks_status_updated ON tasks (user_id, completed, updated_at, id);
CREATE INDEX tasks_status_title   ON tasks (user_id, completed, title, id);

-- Idempotency-Key of a POST: a retried request with the same key returns the task it created.
CREATE TABLE idempotency_keys (
    user_id     text        NOT NULL,
    key         text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint bytea       NOT NULL,  -- sha256 of the validated body: same key, other body -> 422
    task_id     bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
