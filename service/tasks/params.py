"""Path, query and header parameters of the tasks routes: each declared once, parsed by hand.

FastAPI's own parameter solving (a pydantic validation per parameter, through its dependency
graph) was a fifth of a list request's CPU under load (see tests/bench/README.md).
Here a parameter is a name, where it comes from, its OpenAPI schema and a converter made from
that same schema, so what OpenAPI promises and what is enforced cannot drift apart. A route
lists its parameters (and body model) once, in `Inputs`: the same value parses each request
and writes the route's OpenAPI. As with FastAPI: the last of repeated query parameters wins
(unless the parameter is declared `repeated`: then each value counts), unknown ones are ignored,
and every bad parameter is named in one 422.

Path parameters arrive still percent-encoded (see routing.TaskRoute) and are decoded here, as
UTF-8, so that an encoded "/" stays inside its segment.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

from fastapi import Request
from pydantic import BaseModel

from ..errors import InvalidRequest

Location = Literal["path", "query", "header"]


@dataclass(frozen=True)
class Param:
    name: str
    location: Location
    schema: dict[str, Any]
    convert: Callable[[str], Any]  # raises ValueError with a message for the caller
    description: str = ""
    default: Any = None
    max_items: int = 0  # > 0: a repeatable query parameter, its values a sorted tuple without repeats

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.location,
            "required": self.location == "path",
            "description": self.description,
            "schema": self.schema,
        }

    def values(self, raws: list[str]) -> tuple[Any, ...]:
        """A repeatable parameter's values; the order they came in does not matter."""
        if len(raws) > self.max_items:
            raise ValueError(f"at most {self.max_items} values")
        return tuple(sorted({self.convert(raw) for raw in raws}))


def text(name: str, location: Location, *, max_length: int, min_length: int = 0, pattern: str | None = None,
         rule: str = "", description: str = "", refuse: Callable[[str], str | None] | None = None,
         normalize: Callable[[str], str] | None = None) -> Param:  # fmt: skip
    """A string of [min_length, max_length] characters matching `pattern` (anchored: ^…$);
    `rule` says in words what the pattern asks, for the 422. `refuse` names what else is wrong
    with a value (None when nothing is). `normalize` (which may raise ValueError) turns the
    value into its stored form before the checks."""
    matcher = re.compile(pattern) if pattern else None

    def convert(raw: str) -> str:
        if normalize is not None:
            raw = normalize(raw)
        if not min_length <= len(raw) <= max_length:
            raise ValueError(f"must be {min_length} to {max_length} characters")
        if matcher is not None and not matcher.fullmatch(raw):  # fullmatch: "$" must not pass a final newline
            raise ValueError(rule or f"must match {pattern}")
        if refuse is not None and (reason := refuse(raw)) is not None:
            raise ValueError(reason)
        return raw

    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    if pattern:
        schema["pattern"] = pattern
    return Param(name, location, schema, convert, description)


_DIGITS = re.compile(r"[0-9]{1,19}")
_CANONICAL = re.compile(r"[1-9][0-9]{0,18}")


def integer(name: str, location: Location, *, minimum: int, maximum: int, default: int | None = None,
            canonical: bool = False, description: str = "") -> Param:  # fmt: skip
    """An integer in [minimum, maximum]; `canonical` refuses leading zeros (one spelling per id)."""
    spelling = _CANONICAL if canonical else _DIGITS

    def convert(raw: str) -> int:
        if not spelling.fullmatch(raw) or not minimum <= int(raw) <= maximum:
            qualifier = " without sign, leading zeros or separators" if canonical else ""
            raise ValueError(f"must be an integer from {minimum} to {maximum}{qualifier}")
        return int(raw)

    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return Param(name, location, schema, convert, description, default)


def choice(name: str, enum: type[Enum], default: Enum, description: str = "") -> Param:
    members = {member.value: member for member in enum}

    def convert(raw: str) -> Enum:
        try:
            return members[raw]
        except KeyError:
            raise ValueError(f"must be one of {', '.join(members)}") from None

    schema = {"type": "string", "enum": list(members), "default": default.value}
    return Param(name, "query", schema, convert, description, default)


def one_of(name: str, values: tuple[str, ...], description: str = "") -> Param:
    """A query parameter that is one of `values` (no default)."""

    def convert(raw: str) -> str:
        if raw not in values:
            raise ValueError(f"must be one of {', '.join(values)}")
        return raw

    return Param(name, "query", {"type": "string", "enum": list(values)}, convert, description)


def flag(name: str, description: str = "") -> Param:
    """A query parameter that is `true` or `false` (absent: None)."""
    spellings = {"true": True, "false": False}

    def convert(raw: str) -> bool:
        if raw not in spellings:
            raise ValueError("must be true or false")
        return spellings[raw]

    return Param(name, "query", {"type": "boolean"}, convert, description)


def repeated(param: Param, *, max_items: int) -> Param:
    """`param`, given any number of times up to `max_items` (absent: an empty tuple)."""
    schema = {"type": "array", "items": param.schema, "maxItems": max_items}
    return dataclasses.replace(param, schema=schema, default=(), max_items=max_items)


def percent_decoded(raw: str) -> str:
    """A path segment as sent (percent-encoded; any raw octets as Latin-1), decoded as UTF-8."""
    if "%" not in raw and raw.isascii():
        return raw
    try:
        return unquote_to_bytes(raw.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise ValueError("must be percent-encoded UTF-8") from None


def parse(request: Request, *params: Param) -> list[Any]:
    """The value of each parameter, in order (its default when absent); one 422 for all errors."""
    values: list[Any] = []
    errors: list[dict[str, object]] = []
    for param in params:
        try:
            if param.location == "path":
                raw = request.path_params.get(param.name)
                raw = None if raw is None else percent_decoded(raw)
            elif param.max_items:
                values.append(param.values(request.query_params.getlist(param.name)))
                continue
            elif param.location == "query":
                raw = request.query_params.get(param.name)
            else:
                raw = request.headers.get(param.name)
            values.append(param.default if raw is None else param.convert(raw))
        except ValueError as exc:
            errors.append({"field": param.name, "message": str(exc)})
    if errors:
        raise InvalidRequest("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)
    return values


@dataclass(frozen=True)
class Inputs:
    """What a route takes besides its path template: its parameters, in the order its handler
    receives them, and the model of its JSON body (if any). Declared once per route."""

    params: tuple[Param, ...]
    body: type[BaseModel] | None = None

    def openapi(self) -> dict[str, Any]:
        """`openapi_extra` for the route: the parameters and body it parses by hand."""
        extra: dict[str, Any] = {"parameters": [param.openapi() for param in self.params]}
        if self.body is not None:
            schema = self.body.model_json_schema()
            extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        return extra


_INPUTS_ATTRIBUTE = "__task_route_inputs__"


def attach_inputs(endpoint: Callable[..., Any], inputs: Inputs) -> None:
    setattr(endpoint, _INPUTS_ATTRIBUTE, inputs)


def inputs_of(endpoint: Callable[..., Any]) -> Inputs | None:
    """The inputs declared for a route's endpoint (None for routes that declare none)."""
    found = getattr(endpoint, _INPUTS_ATTRIBUTE, None)
    return found if isinstance(found, Inputs) else None
