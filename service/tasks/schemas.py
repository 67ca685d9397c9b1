"""Shapes of the tasks API: request bodies (validated), the task representation, list options."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidRequest, UnsupportedMediaType

TITLE_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 1000
TASK_ID_MAX = 2**63 - 1  # PostgreSQL bigint
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 500
QUERY_MAX_CHARS = 200


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; refuse it here rather than fail in the database.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


ASCII_WHITESPACE = " \t\n\r\x0b\x0c"  # what is trimmed from titles; the pattern below says the same


def _title(value: str) -> str:
    value = _no_nul(value).strip(ASCII_WHITESPACE)
    if not value:
        raise ValueError("must not be blank")
    return value


# The patterns document in OpenAPI what the validators enforce (no NUL, title not blank);
# PostgreSQL text cannot hold NUL. (Lone surrogates are refused as invalid JSON by the parser.)
TEXT_PATTERN = "^[^\\x00]*$"
TITLE_PATTERN = "^[ \\t\\n\\r\\x0b\\x0c]*[^ \\t\\n\\r\\x0b\\x0c\\x00][^\\x00]*$"
Title = Annotated[
    str,
    Field(min_length=1, max_length=TITLE_MAX_CHARS, json_schema_extra={"pattern": TITLE_PATTERN}),
    AfterValidator(_title),
]
Description = Annotated[
    str, Field(max_length=DESCRIPTION_MAX_CHARS, json_schema_extra={"pattern": TEXT_PATTERN}), AfterValidator(_no_nul)
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TaskCreate(_Body):
    title: Title
    description: Description = ""


class TaskReplace(_Body):
    """PUT: the whole editable representation."""

    title: Title
    description: Description
    completed: bool


class TaskPatch(_Body):
    """PATCH: any non-empty subset of the editable fields."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # Absent means "unchanged"; null is refused (the schema says string/boolean, not nullable).
    title: Title = None  # type: ignore[assignment]
    description: Description = None  # type: ignore[assignment]
    completed: bool = None  # type: ignore[assignment]


class Task(BaseModel):
    """A task as the API returns it (documentation: PostgreSQL writes the JSON, see queries.TASK_DOCUMENT)."""

    id: int
    user_id: str
    title: str
    description: str
    completed: bool
    created_at: datetime
    updated_at: datetime


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


class Status(StrEnum):
    all = "all"
    pending = "pending"
    completed = "completed"


class Sort(StrEnum):
    created_at = "created_at"
    created_at_desc = "-created_at"
    updated_at = "updated_at"
    updated_at_desc = "-updated_at"
    title = "title"
    title_desc = "-title"


JSON_TYPES = ("application/json",)


def parse_body(model: type[_Body], content_type: str | None, body: bytes) -> Any:
    """Validate a JSON body into `model`; 415 for other media types, 422 naming each bad field."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType("the body must be application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", [{"field": "body", "message": "invalid JSON"}]) from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", [{"field": "body", "message": "expected an object"}])
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in error["loc"]) or "body", "message": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidRequest("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors) from None
    if isinstance(parsed, TaskPatch) and not parsed.model_fields_set:
        raise InvalidRequest("nothing to update", [{"field": "body", "message": "give at least one field"}])
    return parsed
