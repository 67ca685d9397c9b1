"""What the task routes answer with: a task as PostgreSQL wrote it, its URL, and why a
conditional write found nothing to write."""

from __future__ import annotations

import asyncpg
from fastapi import Response

from ..db.session import UserConnection
from ..errors import PreconditionFailed, TaskNotFound
from . import queries
from .conditions import etag
from .routing import tasks_path


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


async def write_outcome(db: UserConnection, user_id: str, task_id: int, versions: list[int] | None) -> None:
    """Explain why a conditional write touched no row: 412 if the task exists, else 404."""
    if versions is not None and await queries.task_exists(db, user_id, task_id):
        raise PreconditionFailed("the task changed since that ETag; GET it again")
    raise TaskNotFound("no such task")
