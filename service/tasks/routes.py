"""The tasks API under /api/{user_id}/: tasks and labels. The owner is always the verified token's subject."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request, Response

from ..api_docs import problem_responses, success_headers
from ..errors import IdempotencyKeyReused, TaskNotFound
from ..resources import resources
from . import queries
from .conditions import IF_MATCH_PATTERN, expected_versions
from .cursor import MAX_CURSOR_CHARS, decode_cursor, encode_cursor
from .due import DUE_RULE, DUE_SCHEMA, Due, parse_due
from .moves import move_task
from .options import ListOptions
from .params import Param, choice, flag, integer, one_of, repeated, text
from .responses import task_location, task_response, write_outcome
from .routing import TaskRoute, operation, tasks_path
from .schemas import (
    LABEL_MAX_CHARS,
    LABELS_MAX,
    LIST_DEFAULT_LIMIT,
    LIST_MAX_LIMIT,
    PRIORITIES,
    QUERY_MAX_CHARS,
    TASK_ID_MAX,
    TEXT_PATTERN,
    LabelCount,
    Move,
    Sort,
    Status,
    Task,
    TaskCreate,
    TaskPatch,
    TaskReplace,
)
from .text import TITLE_PATTERN, normalize_label, normalize_search

router = APIRouter(
    prefix="/api/{user_id}",
    tags=["tasks"],
    responses=problem_responses(401, 403, 422, 503),
    route_class=TaskRoute,
)

TASK_ID = integer("task_id", "path", minimum=1, maximum=TASK_ID_MAX, canonical=True, description="The task's id")
IF_MATCH = text("If-Match", "header", max_length=8192, pattern=IF_MATCH_PATTERN, rule="must be * or a list of quoted ETags",
                description='`*` or ETags from a GET (`"12-3"`); 412 when the task changed since')  # fmt: skip
IDEMPOTENCY_KEY = text(
    "Idempotency-Key",
    "header",
    max_length=255,
    pattern=r"^[\x21-\x7e]{1,255}$",
    rule="must be visible ASCII characters",
    description="1-255 visible ASCII characters; retrying a POST with the same key returns the first result",
)
STATUS = choice("status", Status, Status.all)
SORT = choice("sort", Sort, Sort.created_at_desc)
QUERY = text("q", "query", max_length=QUERY_MAX_CHARS, pattern=TEXT_PATTERN, rule="must not contain NUL characters",
             description="case-insensitive text search")  # fmt: skip
DUE_AFTER = Param("due_after", "query", {**DUE_SCHEMA, "maxLength": 40}, parse_due,
                  f"Due at or after this ({DUE_RULE}; a date counts as its 00:00 UTC); tasks without a due date are left out")  # fmt: skip
DUE_BEFORE = Param("due_before", "query", {**DUE_SCHEMA, "maxLength": 40}, parse_due,
                   f"Due strictly before this ({DUE_RULE}; a date counts as its 00:00 UTC)")  # fmt: skip
HAS_DUE = flag("has_due", description="true: only tasks with a due date; false: only tasks without")
PRIORITY = repeated(one_of("priority", PRIORITIES, description="Repeatable: tasks of any of these priorities"),
                    max_items=len(PRIORITIES))  # fmt: skip
LABEL = repeated(text("label", "query", max_length=LABEL_MAX_CHARS, min_length=1, pattern=TITLE_PATTERN,
                      rule="must be a label (a title's text rules)", normalize=normalize_label,
                      description="Repeatable: tasks carrying all of these labels (exact spelling)"),
                 max_items=LABELS_MAX)  # fmt: skip
LIMIT = integer("limit", "query", minimum=1, maximum=LIST_MAX_LIMIT, default=LIST_DEFAULT_LIMIT)
CURSOR = text("cursor", "query", max_length=MAX_CURSOR_CHARS, pattern=r"^[A-Za-z0-9_-]+$", rule="the cursor is not valid",
              description="opaque; from the Link rel=next")  # fmt: skip

TASK_ETAG = success_headers(ETag="Strong validator of this version of the task; send it back in If-Match")


@router.get(
    "/tasks",
    response_model=list[Task],
    summary="List the caller's tasks",
    responses={200: success_headers(Link='<…?cursor=…>; rel="next" when there is a next page')},
)
@operation(STATUS, SORT, QUERY, DUE_AFTER, DUE_BEFORE, HAS_DUE, PRIORITY, LABEL, LIMIT, CURSOR)
async def list_tasks(
    request: Request,
    user_id: str,
    status: Status,
    sort: Sort,
    q: str | None,
    due_after: Due | None,
    due_before: Due | None,
    has_due: bool | None,
    priority: tuple[str, ...],
    label: tuple[str, ...],
    limit: int,
    cursor: str | None,
) -> Response:
    options = ListOptions(
        status, sort, normalize_search(q) if q else None, due_after, due_before, has_due, priority, label
    )
    after = decode_cursor(cursor, options) if cursor else None
    async with resources(request).transaction(user_id) as db:
        found = await queries.list_tasks(db, user_id, options, after, limit)
    headers = {}
    if found["more"]:
        params = {"limit": limit, **{name: value for name, value in options.bound().items() if value is not None}}
        params["cursor"] = encode_cursor(options, found["last_key"], found["last_id"])
        headers["Link"] = f'<{tasks_path(user_id)}?{urlencode(params, doseq=True)}>; rel="next"'
    return Response(found["page"].encode(), media_type="application/json", headers=headers)


def fingerprint(body: TaskCreate) -> bytes:
    """What an Idempotency-Key is bound to: the validated body. A body without the task-model
    fields hashes as it did before they existed, so keys taken then still match their retries."""
    fields: list[object] = [body.title, body.description]
    if body.due is not None or body.priority != "none" or body.labels:
        fields += [body.due.canonical() if body.due else None, body.priority, body.labels]
    return hashlib.sha256(orjson.dumps(fields)).digest()


@router.post(
    "/tasks",
    status_code=201,
    response_model=Task,
    summary="Create a task (at the top of the manual order)",
    responses={
        201: success_headers(
            Location="The new task's URL",
            ETag="Strong validator of the task",
            **{"Idempotent-Replayed": "true when this answers a retried Idempotency-Key"},
        ),
        **problem_responses(413, 415),
    },
)
@operation(IDEMPOTENCY_KEY, body=TaskCreate)
async def create_task(request: Request, user_id: str, idempotency_key: str | None, body: TaskCreate) -> Response:
    app = resources(request)
    if idempotency_key is None:
        async with app.transaction(user_id) as db:
            record = await queries.insert_task(db, user_id, body)
        return task_response(record, 201, {"Location": task_location(user_id, record["id"])})

    bound_to = fingerprint(body)
    ttl = app.settings.idempotency_key_ttl_hours
    async with app.transaction(user_id) as db:
        if await queries.claim_idempotency_key(db, user_id, idempotency_key, bound_to, ttl):
            record = await queries.insert_task_for_key(db, user_id, idempotency_key, body)
            return task_response(record, 201, {"Location": task_location(user_id, record["id"])})
        previous = await queries.find_idempotent_result(db, user_id, idempotency_key)
    if previous is None or previous["fingerprint"] != bound_to:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request body")
    if previous["id"] is None:
        raise TaskNotFound("the task created with this Idempotency-Key has since been deleted")
    return task_response(
        previous, 201, {"Location": task_location(user_id, previous["id"]), "Idempotent-Replayed": "true"}
    )


@router.get(
    "/tasks/{task_id}",
    response_model=Task,
    summary="Get one task",
    responses={200: TASK_ETAG, **problem_responses(404)},
)
@operation(TASK_ID)
async def get_task(request: Request, user_id: str, task_id: int) -> Response:
    async with resources(request).transaction(user_id) as db:
        record = await queries.get_task(db, user_id, task_id)
    if record is None:
        raise TaskNotFound("no such task")
    return task_response(record)


@router.put(
    "/tasks/{task_id}",
    response_model=Task,
    summary="Replace a task's editable fields (absent optional ones get their defaults)",
    responses={200: TASK_ETAG, **problem_responses(404, 412, 413, 415)},
)
@operation(TASK_ID, IF_MATCH, body=TaskReplace)
async def replace_task(
    request: Request, user_id: str, task_id: int, if_match: str | None, body: TaskReplace
) -> Response:
    versions = expected_versions(if_match, task_id)
    async with resources(request).transaction(user_id) as db:
        record = await queries.replace_task(db, user_id, task_id, versions, body)
        if record is None:
            await write_outcome(db, user_id, task_id, versions)
    return task_response(record)


@router.patch(
    "/tasks/{task_id}",
    response_model=Task,
    summary="Change some of a task's fields",
    responses={200: TASK_ETAG, **problem_responses(404, 412, 413, 415)},
)
@operation(TASK_ID, IF_MATCH, body=TaskPatch)
async def patch_task(request: Request, user_id: str, task_id: int, if_match: str | None, body: TaskPatch) -> Response:
    versions = expected_versions(if_match, task_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    async with resources(request).transaction(user_id) as db:
        record = await queries.patch_task(db, user_id, task_id, versions, changes)
        if record is None:
            await write_outcome(db, user_id, task_id, versions)
    return task_response(record)


@router.patch(
    "/tasks/{task_id}/complete",
    response_model=Task,
    summary="Toggle completed",
    responses={200: TASK_ETAG, **problem_responses(404, 412)},
)
@operation(TASK_ID, IF_MATCH)
async def toggle_task(request: Request, user_id: str, task_id: int, if_match: str | None) -> Response:
    versions = expected_versions(if_match, task_id)
    async with resources(request).transaction(user_id) as db:
        record = await queries.toggle_task(db, user_id, task_id, versions)
        if record is None:
            await write_outcome(db, user_id, task_id, versions)
    return task_response(record)


router.post(
    "/tasks/{task_id}/move",
    response_model=Task,
    summary="Move a task in the manual order: after another task, or to the top",
    responses={200: TASK_ETAG, **problem_responses(404, 412, 413, 415)},
)(operation(TASK_ID, IF_MATCH, body=Move)(move_task))


@router.delete(
    "/tasks/{task_id}",
    status_code=204,
    summary="Delete a task",
    responses={204: success_headers(), **problem_responses(404, 412)},
)
@operation(TASK_ID, IF_MATCH)
async def delete_task(request: Request, user_id: str, task_id: int, if_match: str | None) -> Response:
    versions = expected_versions(if_match, task_id)
    async with resources(request).transaction(user_id) as db:
        if not await queries.delete_task(db, user_id, task_id, versions):
            await write_outcome(db, user_id, task_id, versions)
    return Response(status_code=204)


@router.get("/labels", response_model=list[LabelCount], summary="List the caller's labels with their task counts")
@operation()
async def list_labels(request: Request, user_id: str) -> Response:
    async with resources(request).transaction(user_id) as db:
        page = await queries.list_labels(db, user_id)
    return Response(page.encode(), media_type="application/json")
