-- The JSON shape of a task in API responses, as a row type: statements return
-- to_json(ROW(...)::task_document)::text, so PostgreSQL writes the response body and the service
-- passes it through instead of decoding each timestamp into Python and encoding it again.
-- The field names and their order here are the API's; change them only with the API.
CREATE TYPE task_document AS (
    id          bigint,
    user_id     text,
    title       text,
    description text,
    completed   boolean,
    created_at  timestamptz,
    updated_at  timestamptz
);
