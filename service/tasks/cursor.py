"""Opaque keyset cursors: the last row's (sort key, id), bound to the list options that made it.

A cursor is not a secret (it only names a position in the caller's own rows, and every value
in it is bound as a parameter), so it is encoded, not signed.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import orjson

from ..errors import InvalidRequest
from .options import ListOptions, sort_column
from .positions import POSITION_MAX
from .schemas import PRIORITIES, TASK_ID_MAX

MAX_CURSOR_CHARS = 1024
_DUE_KEY_MAX_CHARS = 40


def encode_cursor(options: ListOptions, key: Any, task_id: int) -> str:
    value = key.isoformat() if isinstance(key, datetime) else key
    payload = orjson.dumps({"o": options.bound(), "k": value, "i": task_id})
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, options: ListOptions) -> tuple[Any, int]:
    """The (key, id) to continue after; 422 when the cursor is garbled or from another query."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = orjson.loads(raw)
        key, task_id = payload["k"], payload["i"]
        if payload["o"] != options.bound():
            raise _invalid("the cursor belongs to a list with other options")
        if not isinstance(task_id, int) or isinstance(task_id, bool) or not 0 < task_id <= TASK_ID_MAX:
            raise ValueError
        column = sort_column(options.sort)
        if column in ("title", "due_at"):  # a due key is PostgreSQL's text of it (see queries.KEY_AS_TEXT)
            if not isinstance(key, str) or "\x00" in key or (column == "due_at" and len(key) > _DUE_KEY_MAX_CHARS):
                raise ValueError
            return key, task_id
        if column == "priority":
            if key not in PRIORITIES:
                raise ValueError
            return key, task_id
        if column == "position":
            if not isinstance(key, int) or isinstance(key, bool) or not -POSITION_MAX <= key <= POSITION_MAX:
                raise ValueError
            return key, task_id
        moment = datetime.fromisoformat(key)
        if moment.tzinfo is None:
            raise ValueError
        return moment.astimezone(UTC), task_id  # may overflow at the year's edges
    except InvalidRequest:
        raise
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError, orjson.JSONDecodeError):
        raise _invalid("the cursor is not valid") from None


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, [{"field": "cursor", "message": message}])
