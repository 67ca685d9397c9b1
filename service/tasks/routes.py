"""The tasks API under /api/{user_id}/tasks. The owner is always the verified token's subject."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import asyncpg
import orjson
from fastapi import APIRouter, Request, Response

from ..api_docs import problem_responses, success_headers
from ..db.session import UserConnection
from ..errors import IdempotencyKeyReused, PreconditionFailed, TaskNotFound
from ..resources import resources
from . import queries
from .conditions import IF_MATCH_PATTERN, etag, expected_versions
from .cursor import MAX_CURSOR_CHARS, decode_cursor, encode_cursor
from .options import ListOptions
from .params import choice, integer, text
from .routing import TaskRoute, operation, tasks_path
from .schemas import (
    LIST_DEFAULT_LIMIT,
    LIST_MAX_LIMIT,
    QUERY_MAX_CHARS,
    TASK_ID_MAX,
    TEXT_PATTERN,
    Sort,
    Status,
    Task,
    TaskCreate,
    TaskPatch,
    TaskReplace,
)
from .text import normalize_search

router = APIRouter(
    prefix="/api/{user_id}/tasks",
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
LIMIT = integer("limit", "query", minimum=1, maximum=LIST_MAX_LIMIT, default=LIST_DEFAULT_LIMIT)
CURSOR = text("cursor", "query", max_length=MAX_CURSOR_CHARS, pattern=r"^[A-Za-z0-9_-]+$", rule="the cursor is not valid",
              description="opaque; from the Link rel=next")  # fmt: skip

TASK_ETAG = success_headers(ETag="Strong validator of this version of the task; send it back in If-Match")


def task_response(record: asyncpg.Record, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The task's JSON, as PostgreSQL wrote it (see queries.TASK_DOCUMENT)."""
    return Response(
        record["document"].encode(),
        status_code=status,
        media_type="application/json",
        headers={"ETag": etag(record), **(headers or {})},
    )


def task_location(user_id: str, task_id: int) -> str:
    return f"{tasks_path(user_id)}/{task_id}"


async def _write_outcome(db: UserConnection, user_id: str, task_id: int, versions: list[int] | None) -> None:
    """Explain why a conditional write touched no row: 412 if the task exists, else 404."""
    if versions is not None and await queries.task_exists(db, user_id, task_id):
        raise PreconditionFailed("the task changed since that ETag; GET it again")
    raise TaskNotFound("no such task")


@router.get(
    "",
    response_model=list[Task],
    summary="List the caller's tasks",
    responses={200: success_headers(Link='<…?cursor=…>; rel="next" when there is a next page')},
)
@operation(STATUS, SORT, QUERY, LIMIT, CURSOR)
async def list_tasks(
    request: Request, user_id: str, status: Status, sort: Sort, q: str | None, limit: int, cursor: str | None
) -> Response:
    options = ListOptions(status=status, sort=sort, q=normalize_search(q) if q else None)
    after = decode_cursor(cursor, options) if cursor else None
    async with resources(request).transaction(user_id) as db:
        found = await queries.list_tasks(db, user_id, options, after, limit)
    headers = {}
    if found["more"]:
        params = {"limit": limit, **{name: value for name, value in options.bound().items() if value is not None}}
        params["cursor"] = encode_cursor(options, found["last_key"], found["last_id"])
        headers["Link"] = f'<{tasks_path(user_id)}?{urlencode(params)}>; rel="next"'
    return Response(found["page"].encode(), media_type="application/json", headers=headers)


@router.post(
    "",
    status_code=201,
    response_model=Task,
    summary="Create a task",
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
            record = await queries.insert_task(db, user_id, body.title, body.description)
        return task_response(record, 201, {"Location": task_location(user_id, record["id"])})

    fingerprint = hashlib.sha256(orjson.dumps([body.title, body.description])).digest()
    ttl = app.settings.idempotency_key_ttl_hours
    async with app.transaction(user_id) as db:
        if await queries.claim_idempotency_key(db, user_id, idempotency_key, fingerprint, ttl):
            record = await queries.insert_task_for_key(db, user_id, idempotency_key, body.title, body.description)
            return task_response(record, 201, {"Location": task_location(user_id, record["id"])})
        previous = await queries.find_idempotent_result(db, user_id, idempotency_key)
    if previous is None or previous["fingerprint"] != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request body")
    if previous["id"] is None:
        raise TaskNotFound("the task created with this Idempotency-Key has since been deleted")
    return task_response(
        previous, 201, {"Location": task_location(user_id, previous["id"]), "Idempotent-Replayed": "true"}
    )


@router.get(
    "/{task_id}", response_model=Task, summary="Get one task", responses={200: TASK_ETAG, **problem_responses(404)}
)
@operation(TASK_ID)
async def get_task(request: Request, user_id: str, task_id: int) -> Response:
    async with resources(request).transaction(user_id) as db:
        record = await queries.get_task(db, user_id, task_id)
    if record is None:
        raise TaskNotFound("no such task")
    return task_response(record)


@router.put(
    "/{task_id}",
    response_model=Task,
    summary="Replace a task's title, description and completed",
    responses={200: TASK_ETAG, **problem_responses(404, 412, 413, 415)},
)
@operation(TASK_ID, IF_MATCH, body=TaskReplace)
async def replace_task(
    request: Request, user_id: str, task_id: int, if_match: str | None, body: TaskReplace
) -> Response:
    versions = expected_versions(if_match, task_id)
    async with resources(request).transaction(user_id) as db:
        record = await queries.replace_task(
            db, user_id, task_id, versions, body.title, body.description, body.completed
        )
        if record is None:
            await _write_outcome(db, user_id, task_id, versions)
    return task_response(record)


@router.patch(
    "/{task_id}",
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
            await _write_outcome(db, user_id, task_id, versions)
    return task_response(record)


@router.patch(
    "/{task_id}/complete",
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
            await _write_outcome(db, user_id, task_id, versions)
    return task_response(record)


@router.delete(
    "/{task_id}",
    status_code=204,
    summary="Delete a task",
    responses={204: success_headers(), **problem_responses(404, 412)},
)
@operation(TASK_ID, IF_MATCH)
async def delete_task(request: Request, user_id: str, task_id: int, if_match: str | None) -> Response:
    versions = expected_versions(if_match, task_id)
    async with resources(request).transaction(user_id) as db:
        if not await queries.delete_task(db, user_id, task_id, versions):
            await _write_outcome(db, user_id, task_id, versions)
    return Response(status_code=204)
