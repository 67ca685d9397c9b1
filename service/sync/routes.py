"""Incremental sync (`GET …/tasks/changes`) and live updates (`GET …/tasks/events`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from ..api_docs import problem_responses
from ..head import ANSWERED_AS_HEAD
from ..resources import resources
from ..tasks.params import integer, text
from ..tasks.routing import TaskRoute, operation
from .feed import DEFAULT_LIMIT, MAX_LIMIT, Page, read_page
from .hub import RETRY_AFTER_SECONDS
from .runtime import event_hub
from .stream import MEDIA_TYPE, EventStreamResponse, stream_changes
from .tokens import MAX_TOKEN_CHARS, TOKEN_PATTERN, SyncToken, check_fresh, decode_token, expires_at

router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["sync"],
    responses=problem_responses(401, 403, 422, 503),
    route_class=TaskRoute,
)

_TOKEN_RULE = "the sync token is not valid"
SINCE = text("since", "query", max_length=MAX_TOKEN_CHARS, pattern=TOKEN_PATTERN, rule=_TOKEN_RULE,
             description="A sync token (`next` of /changes, or an event's id); omitted: from the start")  # fmt: skip
LAST_EVENT_ID = text("Last-Event-ID", "header", max_length=MAX_TOKEN_CHARS, pattern=TOKEN_PATTERN, rule=_TOKEN_RULE,
                     description="Sent by EventSource when it reconnects; wins over `since`")  # fmt: skip
LIMIT = integer("limit", "query", minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT)

_GONE = problem_responses(410)
_CHANGES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["changes", "next", "more"],
    "properties": {
        "changes": {
            "type": "array",
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"op": {"const": "upsert"}, "task": {"$ref": "#/components/schemas/Task"}},
                    },
                    {"type": "object", "properties": {"op": {"const": "delete"}, "id": {"type": "integer"}}},
                ]
            },
        },
        "next": {"type": "string", "description": "The token to ask with next time"},
        "more": {"type": "boolean", "description": "More changes are waiting: ask again now"},
    },
}


async def _no_events() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that ends at once


async def _read(request: Request, user_id: str, since: SyncToken | None, limit: int) -> Page:
    app = resources(request)
    async with app.transaction(user_id) as db:
        return await read_page(db, user_id, since, limit, time.time(), app.settings.sync_retention_days)


@router.get(
    "/changes",
    summary="Changes since a sync token, in commit order",
    responses={200: {"content": {"application/json": {"schema": _CHANGES_SCHEMA}}}, **_GONE},
)
@operation(SINCE, LIMIT)
async def list_changes(request: Request, user_id: str, since: str | None, limit: int) -> Response:
    position = decode_token(since, user_id, "since") if since else None
    page = await _read(request, user_id, position, limit)
    changes = ",".join(change for _, change in page.changes)
    body = f'{{"changes":[{changes}],"next":"{page.next.encode(user_id)}","more":{"true" if page.more else "false"}}}'
    return Response(body.encode(), media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get(
    "/events",
    summary="Live changes as server-sent events",
    status_code=200,
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "One event per change (`id:` its sync token, `data:` as in /changes); comment heartbeats",
            "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        503: {
            **problem_responses(503)[503],
            "description": f"Too many streams open (`too_many_streams`), or the database or keys are unavailable;"
            f" retry after Retry-After ({RETRY_AFTER_SECONDS} s for streams)",
        },
        **_GONE,
    },
)
@operation(SINCE, LAST_EVENT_ID)
async def stream_events(request: Request, user_id: str, since: str | None, last_event_id: str | None) -> Response:
    if last_event_id:
        position: SyncToken | None = decode_token(last_event_id, user_id, "Last-Event-ID")
    else:
        position = decode_token(since, user_id, "since") if since else None
    app = resources(request)
    retention = app.settings.sync_retention_days
    opened = position or SyncToken(0, int(time.time()))
    check_fresh(opened, time.time(), retention)
    if request.scope.get(ANSWERED_AS_HEAD):
        return EventStreamResponse(_no_events(), lambda: None)
    hub = event_hub(request)
    # Subscribed before the first read: a change committed after that read wakes the stream.
    subscription = hub.subscribe(user_id)
    try:
        first = await _read(request, user_id, position, DEFAULT_LIMIT)
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    body = stream_changes(
        first,
        lambda after: _read(request, user_id, after, DEFAULT_LIMIT),
        lambda token: token.encode(user_id),
        time.time,
        hub,
        subscription,
        app.settings.event_heartbeat_seconds,
        expires_at(opened, retention),
    )
    return EventStreamResponse(body, lambda: hub.unsubscribe(subscription))
