-- Incremental sync and live updates: a per-user change feed kept by a trigger on `tasks`.
--
-- Why not a global sequence or `updated_at`: transactions commit out of the order in which they
-- drew their numbers, so a reader that saw change 11 may not yet see change 10, and a client
-- that stored "11" would miss 10 for ever. Here every write to a user's tasks bumps that
-- user's row in `sync_counters` in the same transaction. The bump locks the row until commit,
-- so a second writer of the same user waits there and draws the next number only after the
-- first committed (or, if it rolled back, draws the same number again). Per user, sequence
-- order is therefore commit order with no gaps: a statement that sees change N sees every
-- change before N. Writers of different users never wait on each other.
--
-- The log keeps one row per task: its latest change (`seq`) and whether that change was a
-- delete. A client asking for "changes after S" gets every task whose latest change is after
-- S, in seq order, with the task as it is now. Several changes to one task between two reads
-- arrive as one upsert carrying the latest state; applied in order they give exactly the
-- server's state at the last seq returned.
--
-- Lock order, to rule out deadlocks with the quota counter of 0004: a write locks its task
-- row, then `task_counts` (insert: BEFORE trigger; delete: AFTER trigger `tasks_count_delete`),
-- then `sync_counters` (AFTER trigger `tasks_sync_log`, which sorts after it: PostgreSQL fires
-- triggers of one kind in name order). Every writer takes them in that order.

CREATE TABLE sync_counters (
    user_id       text   PRIMARY KEY,
    seq           bigint NOT NULL,            -- the user's latest change
    expired_below bigint NOT NULL DEFAULT 0   -- tokens before this seq may miss purged tombstones
);

CREATE TABLE task_changes (
    user_id    text        NOT NULL,
    task_id    bigint      NOT NULL,
    seq        bigint      NOT NULL,
    deleted    boolean     NOT NULL,          -- true: a tombstone, purged after the retention
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, task_id)
);
CREATE UNIQUE INDEX task_changes_by_seq ON task_changes (user_id, seq);
CREATE INDEX task_changes_tombstones ON task_changes (changed_at) WHERE deleted;

GRANT SELECT, INSERT, UPDATE ON sync_counters, task_changes TO tasks_app;

ALTER TABLE sync_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_counters_owner ON sync_counters
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

ALTER TABLE task_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY task_changes_owner ON task_changes
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

-- The bookkeeping of every write, so that each write stays one statement. It runs as the
-- writer (tasks_app, under the policies above) and NOTIFYs `task_changes` with "seq:user_id";
-- PostgreSQL delivers notifications at commit, in commit order, to every listening process.
CREATE FUNCTION record_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner   text;
    task    bigint;
    drawn   bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        owner := OLD.user_id;
        task := OLD.id;
    ELSE
        owner := NEW.user_id;
        task := NEW.id;
    END IF;
    INSERT INTO sync_counters AS c (user_id, seq) VALUES (owner, 1)
    ON CONFLICT (user_id) DO UPDATE SET seq = c.seq + 1
    RETURNING c.seq INTO drawn;
    INSERT INTO task_changes AS l (user_id, task_id, seq, deleted) VALUES (owner, task, drawn, TG_OP = 'DELETE')
    ON CONFLICT (user_id, task_id) DO UPDATE SET seq = EXCLUDED.seq, deleted = EXCLUDED.deleted, changed_at = now();
    PERFORM pg_notify('task_changes', drawn::text || ':' || owner);
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_sync_log AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION record_task_change();

-- Tombstones older than the retention are purged for all users by a background job, through
-- one function that runs as `tasks_maintenance` (the role migration 0004 created). That role
-- sees only tombstones, and the counters to move each user's
-- `expired_below` past what was purged, so a token that predates a purged tombstone gets 410
-- instead of silently missing that delete. Each call purges at most `max_rows`.
GRANT SELECT, DELETE ON task_changes TO tasks_maintenance;
GRANT SELECT, UPDATE (expired_below) ON sync_counters TO tasks_maintenance;
CREATE POLICY task_changes_tombstones ON task_changes TO tasks_maintenance USING (deleted);
CREATE POLICY sync_counters_horizon ON sync_counters TO tasks_maintenance USING (true) WITH CHECK (true);

CREATE FUNCTION purge_sync_tombstones(retention_days integer, max_rows integer) RETURNS integer
    LANGUAGE sql VOLATILE SET role = tasks_maintenance
AS $$
    WITH doomed AS (
        SELECT user_id, task_id FROM task_changes
        WHERE deleted AND changed_at < now() - make_interval(days => retention_days)
        ORDER BY changed_at
        LIMIT max_rows
    ), purged AS (
        -- Tested again on the row deleted: a task id is never reused, but stay exact anyway.
        DELETE FROM task_changes c USING doomed d
        WHERE c.user_id = d.user_id AND c.task_id = d.task_id AND c.deleted
          AND c.changed_at < now() - make_interval(days => retention_days)
        RETURNING c.user_id, c.seq
    ), horizons AS (
        UPDATE sync_counters s SET expired_below = greatest(s.expired_below, p.seq)
        FROM (SELECT user_id, max(seq) AS seq FROM purged GROUP BY user_id) p
        WHERE s.user_id = p.user_id
        RETURNING 1
    )
    SELECT count(*)::integer FROM purged
$$;
REVOKE ALL ON FUNCTION purge_sync_tombstones(integer, integer) FROM PUBLIC;
