-- A home for the statements a request sends in one round trip (service/db/statements.py).
--
-- A request used to cost three round trips: BEGIN with the role and the user, its statement,
-- COMMIT. Each statement that is a request's whole database work is now also a PL/pgSQL function
-- in this schema, made by the service from its own SQL text when it starts (under the migrations'
-- lock) and named after a hash of that text and of these migrations. The function switches to
-- `tasks_app` for its own duration (its SET clause, undone when it returns), sets `app.user_id` to
-- its first argument for the rest of the transaction, and runs the statement: the call is one
-- statement, so one implicit transaction that ends with it, and nothing outlives it, behind
-- pgbouncer in transaction mode too. Row-level security stays forced: `tasks_app` neither owns the
-- tables nor bypasses it, so a statement that forgot its owner filter still sees one user's rows.
-- PL/pgSQL keeps each statement's plan for the session, as a prepared statement did.
--
-- Calling one gives nothing a member of `tasks_app` could not do already (SET ROLE tasks_app, then
-- set `app.user_id`), so EXECUTE goes to `tasks_app`, and to nobody else.
CREATE SCHEMA IF NOT EXISTS owned_statements;
REVOKE ALL ON SCHEMA owned_statements FROM PUBLIC;
GRANT USAGE ON SCHEMA owned_statements TO tasks_app;
