-- One user must not be able to starve the others.
--
-- 1. Text search (`q`) through a trigram index instead of a scan of every one of the user's
--    rows. btree_gin lets the same GIN index hold user_id, so a search reads only the caller's
--    entries. Both extensions are trusted: a database owner may create them.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX tasks_text_search ON tasks USING gin (user_id, title gin_trgm_ops, description gin_trgm_ops);

-- Row-level security keeps ILIKE (not leakproof) out of index conditions: under the owner
-- policy the planner must filter rows before testing them, so it could never use this index.
-- The search therefore runs in one function, as `tasks_search`, whose policy admits every row
-- and which can only read. The function returns only the ids of `owner`'s tasks, and only when
-- `owner` is the transaction's `app.user_id`, the user the owner policy compares with: a caller
-- cannot ask for anyone else's. It stops at `max_ids`: the list statement reads the page by those
-- ids when there are few, and walks the sort index when a term is common. Each call is planned
-- with its own values (force_custom_plan), so the owner's share of the table is known.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tasks_search') THEN
        CREATE ROLE tasks_search NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT pg_has_role(current_user, 'tasks_search', 'MEMBER') THEN
        EXECUTE format('GRANT tasks_search TO %I', current_user);
    END IF;
END
$$;
GRANT SELECT (user_id, id, title, description) ON tasks TO tasks_search;
CREATE POLICY tasks_search_reads ON tasks FOR SELECT TO tasks_search USING (true);

CREATE FUNCTION matching_task_ids(owner text, pattern text, max_ids integer) RETURNS bigint[]
    LANGUAGE sql STABLE SET role = tasks_search SET plan_cache_mode = force_custom_plan
AS $$
    SELECT coalesce(array_agg(id), '{}') FROM (
        SELECT id FROM tasks
        WHERE user_id = owner AND owner = current_setting('app.user_id', true)
          AND (title ILIKE pattern OR description ILIKE pattern)
        LIMIT max_ids
    ) AS found
$$;
REVOKE ALL ON FUNCTION matching_task_ids(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION matching_task_ids(text, text, integer) TO tasks_app;

-- 2. A per-user task quota that holds under concurrent creates. Counting rows on every insert
--    would cost as much as the quota is large; instead a counter row per user is kept by
--    triggers. The insert's upsert locks that row until commit, so concurrent creates of one
--    user queue on it and each sees the count the previous one left.
CREATE TABLE task_counts (
    user_id text    PRIMARY KEY,
    tasks   integer NOT NULL CHECK (tasks >= 0)
);
INSERT INTO task_counts (user_id, tasks) SELECT user_id, count(*) FROM tasks GROUP BY user_id;

GRANT SELECT, INSERT, UPDATE ON task_counts TO tasks_app;
ALTER TABLE task_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY task_counts_owner ON task_counts
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

-- The limit is the transaction's `app.max_tasks` (set with the user id); unset, there is none.
-- SQLSTATE TQ001 is ours: "task limit reached", answered as a 409 by the service.
CREATE FUNCTION count_task_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held integer;
    max_tasks integer := nullif(current_setting('app.max_tasks', true), '')::integer;
BEGIN
    INSERT INTO task_counts AS c (user_id, tasks) VALUES (NEW.user_id, 1)
    ON CONFLICT (user_id) DO UPDATE SET tasks = c.tasks + 1
    RETURNING c.tasks INTO held;
    IF max_tasks IS NOT NULL AND held > max_tasks THEN
        RAISE EXCEPTION 'task limit of % reached', max_tasks USING ERRCODE = 'TQ001';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION count_task_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_counts SET tasks = tasks - 1 WHERE user_id = OLD.user_id;
    RETURN OLD;
END
$$;

CREATE TRIGGER tasks_count_insert BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION count_task_insert();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks FOR EACH ROW EXECUTE FUNCTION count_task_delete();

-- 3. Expired idempotency keys are swept for all users by a background job, through one
--    function that runs as `tasks_maintenance`. That role sees and deletes only keys older than
--    an hour (the shortest TTL the service accepts), so the sweep can never remove a live key.
--    Each call deletes at most `max_rows` keys. The age is tested again on the row deleted: a
--    request that took an expired key over meanwhile has renewed it, and it stays.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tasks_maintenance') THEN
        CREATE ROLE tasks_maintenance NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT pg_has_role(current_user, 'tasks_maintenance', 'MEMBER') THEN
        EXECUTE format('GRANT tasks_maintenance TO %I', current_user);
    END IF;
END
$$;
GRANT SELECT, DELETE ON idempotency_keys TO tasks_maintenance;
CREATE POLICY idempotency_keys_expired ON idempotency_keys TO tasks_maintenance
    USING (created_at < now() - interval '1 hour');
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE FUNCTION sweep_expired_idempotency_keys(ttl_hours integer, max_rows integer) RETURNS integer
    LANGUAGE sql VOLATILE SET role = tasks_maintenance
AS $$
    WITH doomed AS (
        SELECT user_id, key FROM idempotency_keys
        WHERE created_at < now() - make_interval(hours => ttl_hours)
        ORDER BY created_at
        LIMIT max_rows
    ), deleted AS (
        DELETE FROM idempotency_keys k USING doomed d
        WHERE k.user_id = d.user_id AND k.key = d.key AND k.created_at < now() - make_interval(hours => ttl_hours)
        RETURNING 1
    )
    SELECT count(*)::integer FROM deleted
$$;
REVOKE ALL ON FUNCTION sweep_expired_idempotency_keys(integer, integer) FROM PUBLIC;
