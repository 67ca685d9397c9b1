-- Defence in depth: even a statement that forgot `WHERE user_id = $1` sees only the caller's rows.
-- Every request runs in a transaction that switches to `tasks_app` (SET LOCAL ROLE), which neither
-- owns these tables nor bypasses RLS, and sets `app.user_id` locally (set_config(..., true)), so
-- neither can outlive the request's transaction, even behind pgbouncer in transaction mode.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tasks_app') THEN
        CREATE ROLE tasks_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT pg_has_role(current_user, 'tasks_app', 'MEMBER') THEN
        EXECUTE format('GRANT tasks_app TO %I', current_user);
    END IF;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON tasks, idempotency_keys TO tasks_app;

ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY tasks_owner ON tasks
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_owner ON idempotency_keys
    USING (user_id = current_setting('app.user_id', true))
    WITH CHECK (user_id = current_setting('app.user_id', true));
