"""Moving a task in the manual order: POST /api/{user_id}/tasks/{id}/move {"after": id | null}.

The move itself is one UPDATE of the moved row (queries.move_task). When its neighbours' keys
leave no room, the fewest tasks around the spot are respaced (positions.respace, one bounded
batch) and the move is tried again, all in the request's transaction.
"""

from __future__ import annotations

from fastapi import Request, Response

from ..db.session import UserConnection
from ..errors import InvalidRequest, PreconditionFailed, TaskNotFound
from ..resources import resources
from . import queries
from .conditions import expected_versions
from .positions import respace
from .responses import task_response
from .schemas import Move

RESPACE_ATTEMPTS = 3  # each respacing makes room unless concurrent moves keep filling it
RESPACE_BATCH = 256  # rows per respacing statement


async def move_task(request: Request, user_id: str, task_id: int, if_match: str | None, body: Move) -> Response:
    versions = expected_versions(if_match, task_id)
    if body.after == task_id:
        raise _bad_after("a task cannot be moved after itself")
    async with resources(request).transaction(user_id) as db:
        for _ in range(RESPACE_ATTEMPTS):
            record = await queries.move_task(db, user_id, task_id, versions, body.after)
            if record is not None:
                return task_response(record)
            await _refuse_or_make_room(db, user_id, task_id, versions, body.after)
    raise PreconditionFailed("the list kept changing around that spot; GET it again and retry")


async def _refuse_or_make_room(
    db: UserConnection, user_id: str, task_id: int, versions: list[int] | None, after: int | None
) -> None:
    """Why the move wrote nothing: 404, 412 or 422 for the caller; otherwise there was no room
    at the spot, which this makes."""
    version = await queries.task_version(db, user_id, task_id)
    if version is None:
        raise TaskNotFound("no such task")
    if versions is not None and version not in versions:
        raise PreconditionFailed("the task changed since that ETag; GET it again")
    rows = await queries.position_keys(db, user_id, task_id)
    ids = [row["id"] for row in rows]
    if after is not None and after not in ids:
        raise _bad_after("no such task")
    keys = [row["position"] for row in rows]
    slot = 0 if after is None else ids.index(after) + 1
    start, new_keys = respace(keys, slot)
    for first in range(0, len(new_keys), RESPACE_BATCH):
        batch = slice(start + first, start + min(first + RESPACE_BATCH, len(new_keys)))
        await queries.respace_positions(db, user_id, ids[batch], keys[batch], new_keys[first : first + RESPACE_BATCH])


def _bad_after(message: str) -> InvalidRequest:
    return InvalidRequest(f"after: {message}", [{"field": "after", "message": message}])
