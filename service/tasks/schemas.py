"""Shapes of the tasks API: request bodies (validated), the task representation, list options."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)

from ..errors import InvalidRequest, UnsupportedMediaType
from .due import DUE_RULE, DUE_SCHEMA, Due, due_or_refuse
from .text import DESCRIPTION_PATTERN, TITLE_PATTERN, normalize_description, normalize_label, normalize_title

TITLE_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 1000
TASK_ID_MAX = 2**63 - 1  # PostgreSQL bigint
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 500
QUERY_MAX_CHARS = 200
LABEL_MAX_CHARS = 50
LABELS_MAX = 20
PRIORITIES = ("none", "low", "medium", "high")  # lowest first


def _text_validator(normalize: Callable[[str], str]) -> BeforeValidator:
    """Normalise before pydantic's own checks, so lengths are counted on the stored form."""

    def validate(value: Any) -> Any:
        return normalize(value) if isinstance(value, str) else value  # anything else: "not a string"

    return BeforeValidator(validate)


# The patterns document in OpenAPI what the text rules enforce; lengths are in code points,
# counted after normalisation (see service/tasks/text.py).
Title = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TITLE_MAX_CHARS,
        json_schema_extra={"pattern": TITLE_PATTERN},
        description="NFC-normalised and trimmed; no control or bidirectional control characters; "
        f"something visible; at most {TITLE_MAX_CHARS} characters once normalised",
    ),
    _text_validator(normalize_title),
]
Description = Annotated[
    str,
    Field(
        max_length=DESCRIPTION_MAX_CHARS,
        json_schema_extra={"pattern": DESCRIPTION_PATTERN},
        description="NFC-normalised, CRLF and CR stored as LF; no control characters but tab and line "
        f"breaks, no bidirectional controls; at most {DESCRIPTION_MAX_CHARS} characters once normalised",
    ),
    _text_validator(normalize_description),
]

Label = Annotated[
    str,
    Field(
        min_length=1,
        max_length=LABEL_MAX_CHARS,
        json_schema_extra={"pattern": TITLE_PATTERN},
        description=f"A title's text rules; at most {LABEL_MAX_CHARS} characters once normalised",
    ),
    _text_validator(normalize_label),
]


def _first_spelling_of_each(labels: list[str]) -> list[str]:
    """Labels that differ only in case are one label: the first spelling is kept."""
    seen: set[str] = set()
    kept = []
    for label in labels:
        if (key := label.casefold()) not in seen:
            seen.add(key)
            kept.append(label)
    return kept


Labels = Annotated[
    list[Label],
    Field(
        max_length=LABELS_MAX,
        description=f"At most {LABELS_MAX}; case variants of a label are one label (the first spelling is kept)",
    ),
    AfterValidator(_first_spelling_of_each),
]
Priority = Literal["none", "low", "medium", "high"]
DueDate = Annotated[
    Due | None,
    PlainValidator(due_or_refuse),
    WithJsonSchema({"anyOf": [DUE_SCHEMA, {"type": "null"}], "description": f"null or {DUE_RULE}"}),
]

# The `q` parameter is checked by the route (no NUL: PostgreSQL text cannot hold it) and then
# normalised with text.normalize_search.
TEXT_PATTERN = "^[^\\x00]*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TaskCreate(_Body):
    title: Title
    description: Description = ""
    due: DueDate = None
    priority: Priority = "none"
    labels: Labels = []


class TaskReplace(_Body):
    """PUT: the whole editable representation; the fields optional on create get their defaults
    when absent."""

    title: Title
    description: Description
    completed: bool
    due: DueDate = None
    priority: Priority = "none"
    labels: Labels = []


class TaskPatch(_Body):
    """PATCH: any non-empty subset of the editable fields."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # Absent means "unchanged"; null is refused (the schema says string/boolean, not nullable).
    title: Title = None  # type: ignore[assignment]  # None only marks "absent"; a sent null fails validation
    description: Description = None  # type: ignore[assignment]  # as above
    completed: bool = None  # type: ignore[assignment]  # as above
    due: DueDate = None  # here null is a value: it clears the due date
    priority: Priority = None  # type: ignore[assignment]  # None only marks "absent"
    labels: Labels = None  # type: ignore[assignment]  # as above


class Task(BaseModel):
    """A task as the API returns it (documentation: PostgreSQL writes the JSON, see queries.TASK_DOCUMENT)."""

    id: int
    user_id: str
    title: str
    description: str
    completed: bool
    created_at: datetime
    updated_at: datetime
    due: str | None = Field(description=f"null or {DUE_RULE}; a date-time is returned in UTC")
    priority: Priority
    labels: list[str]
    position: int = Field(description="Manual order: ascending from the top; change it with /move")
    completed_at: datetime | None = Field(description="When the task was last completed; null while pending")


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
    title = "title"  # type: ignore[assignment]  # a sort key named like str.title, which enums never call
    title_desc = "-title"
    due = "due"  # earliest first, no due date last
    priority = "priority"  # high first
    position = "position"  # manual order


def _integral_number(value: Any) -> Any:
    """JSON has one number type: 5.0 is the integer 5 (as JSON Schema counts it); 5.5 is not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Move(_Body):
    """Where to put a task: after another task of the caller's, or at the top (null)."""

    after: Annotated[int, Field(ge=1, le=TASK_ID_MAX), BeforeValidator(_integral_number)] | None = Field(
        description="A task id, or null for the top"
    )


class LabelCount(BaseModel):
    label: str
    tasks: int = Field(description="How many of the caller's tasks carry it")


JSON_TYPES = ("application/json",)
_FIELD_NAME_SHOWN_CHARS = 64  # a duplicate member's name is echoed back; it is the client's text


def _problem(errors: list[dict[str, object]]) -> InvalidRequest:
    return InvalidRequest("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)


def _repeated_names_per_object(text: str) -> list[list[str]]:
    """For each JSON object in `text`, innermost first (so the outermost is last): the names it repeats."""
    found: list[list[str]] = []

    def record(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found.append([name for name, count in Counter(name for name, _ in pairs).items() if count > 1])
        return {}  # only the names matter here: orjson already gave the values

    # Values are not needed: numbers are not even converted (no cost, no int-size limit).
    json.loads(text, object_pairs_hook=record, parse_int=_ignore, parse_float=_ignore, parse_constant=_ignore)
    return found


def _ignore(_: str) -> None:
    return None


def refuse_repeated_members(body: bytes, data: dict[str, Any]) -> None:
    """422 naming each member that the JSON object `body` repeats (orjson, which parsed it as
    `data`, silently keeps the last one).

    Each member has exactly one ':' outside strings, so when every value of `data` is a scalar and
    the body holds no more ':' than `data` has members, nothing is repeated: the usual body is
    settled by one bytes.count. Otherwise (a ':' inside a string, say) the standard library
    parses it again and sees every member, which costs about as much as the first parse.
    """
    if body.count(b":") == len(data) and not any(isinstance(value, dict | list) for value in data.values()):
        return
    try:
        *inner, outer = _repeated_names_per_object(body.decode())
    except RecursionError:  # orjson allows deeper nesting than the standard library; no field nests
        raise _problem([{"field": "body", "message": "nested too deeply"}]) from None
    except ValueError:  # not expected after orjson accepted the body; still a 422, never a 500
        raise _problem([{"field": "body", "message": "invalid JSON"}]) from None
    errors: list[dict[str, object]] = [
        {"field": name[:_FIELD_NAME_SHOWN_CHARS], "message": "duplicate member"} for name in outer
    ]
    if any(inner):
        errors.append({"field": "body", "message": "duplicate member in a nested object"})
    if errors:
        raise _problem(errors)


def parse_body(model: type[_Body], content_type: str | None, body: bytes) -> Any:
    """Validate a JSON body into `model`; 415 for other media types, 422 naming each bad field."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType("the body must be application/json")
    try:
        data = orjson.loads(body)  # strict RFC 8259: no NaN, no lone surrogates, UTF-8 only
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON", [{"field": "body", "message": "invalid JSON"}]) from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", [{"field": "body", "message": "expected an object"}])
    refuse_repeated_members(body, data)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise _problem(
            [
                {"field": ".".join(str(p) for p in error["loc"]) or "body", "message": error["msg"]}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
    if isinstance(parsed, TaskPatch) and not parsed.model_fields_set:
        raise InvalidRequest("nothing to update", [{"field": "body", "message": "give at least one field"}])
    return parsed
