"""How a tasks route is matched and called: on the path as the client sent it, the owner checked
before anything else, then the route's declared inputs parsed by hand."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from ..auth.dependencies import USER_ID_MAX_CHARS, owner
from .params import Inputs, Param, attach_inputs, inputs_of, parse, text
from .schemas import parse_body


def _not_a_dot_segment(user_id: str) -> str | None:
    # Resolving a URL removes these segments (browsers do even when they are sent as %2E).
    return "cannot be . or .., which URLs remove" if user_id in (".", "..") else None


USER_ID = text("user_id", "path", min_length=1, max_length=USER_ID_MAX_CHARS, refuse=_not_a_dot_segment,
               description="The token's `sub`, percent-encoded (any characters; see the README)")  # fmt: skip

# What JavaScript's encodeURIComponent leaves as is, besides letters, digits and "-_.~": a client
# (or the Next.js proxy) that built its URL with it finds the same text in Location and Link.
_SEGMENT_SAFE = "!'()*"


def tasks_path(user_id: str) -> str:
    """The URL path of `user_id`'s tasks, with the id percent-encoded as one path segment."""
    return f"/api/{quote(user_id, safe=_SEGMENT_SAFE)}/tasks"


def path_as_sent(scope: Scope) -> str:
    """The request's path before percent-decoding (its octets as Latin-1), without the root path."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:  # optional in ASGI: re-encode the decoded path (an encoded "/" is lost then)
        return quote(scope["path"], safe="/")
    path = raw.decode("latin-1")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class TaskRoute(APIRoute):
    """A tasks route, matched against the path as sent, so that a user id holding "/" (sent as
    %2F) stays one segment; its path parameters reach `params.parse` still encoded. Its OpenAPI
    parameters and body are the ones its endpoint declares (see `operation`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        inputs = inputs_of(endpoint)
        if inputs is not None:
            kwargs["openapi_extra"] = {**inputs.openapi(), **(kwargs.get("openapi_extra") or {})}
        super().__init__(path, endpoint, **kwargs)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        found = self.path_regex.match(path_as_sent(scope))
        if found is None:
            return Match.NONE, {}
        path_params = {**scope.get("path_params", {}), **found.groupdict()}
        child_scope = {"endpoint": self.endpoint, "path_params": path_params, "route": self}
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child_scope  # the path is ours: 405, not 404
        return Match.FULL, child_scope


Handler = Callable[..., Awaitable[Response]]


def _python_name(name: str) -> str:
    return name.lower().replace("-", "_")


def operation(*params: Param, body: type[Any] | None = None) -> Callable[[Handler], Handler]:
    """Declare a tasks route's inputs once; they are parsed for each request and documented.

    The endpoint parses the path's user id and checks it is the token's subject (403) before
    anything else, then calls `handler(request, user_id, *values of params[, body])`.
    """
    inputs = Inputs((USER_ID, *params), body)
    expected = ["request", *(_python_name(param.name) for param in inputs.params), *(["body"] if body else [])]

    def decorate(handler: Handler) -> Handler:
        # The values are passed by position: a handler whose parameters are in another order
        # would silently get the wrong ones, so refuse it when the module is imported.
        if list(inspect.signature(handler).parameters) != expected:
            raise TypeError(f"{handler.__name__} must take ({', '.join(expected)}), in that order")

        async def endpoint(request: Request) -> Response:
            (named,) = parse(request, USER_ID)
            user_id = owner(request, named)
            values = parse(request, *params)
            if body is not None:
                values.append(parse_body(body, request.headers.get("content-type"), await request.body()))
            return await handler(request, user_id, *values)

        # Not functools.wraps: FastAPI would follow __wrapped__ and solve the handler's parameters.
        endpoint.__name__, endpoint.__qualname__ = handler.__name__, handler.__qualname__
        endpoint.__doc__, endpoint.__module__ = handler.__doc__, handler.__module__
        attach_inputs(endpoint, inputs)
        return endpoint

    return decorate
