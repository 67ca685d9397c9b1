"""RFC 9728 protected-resource metadata at `/.well-known/oauth-protected-resource`: how OAuth and
MCP clients learn which authorization server (Better Auth's OAuth provider) grants tokens for
this service, and which scopes it knows. Served only when OAuth access tokens are accepted."""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Request, Response

from .auth.token_types import SCOPES_SUPPORTED
from .errors import NotFound
from .resources import resources
from .settings import Settings

METADATA_PATH = "/.well-known/oauth-protected-resource"

router = APIRouter(tags=["oauth"])


def protected_resource_metadata(settings: Settings) -> dict[str, object]:
    return {
        "resource": settings.oauth_resource,
        "authorization_servers": [settings.oauth_authorization_server],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "bearer_methods_supported": ["header"],
        "resource_name": "Tasks service",
    }


def metadata_url(resource: str) -> str:
    """Where this service serves the metadata: the well-known path at the resource's origin.
    Clients follow the URL a challenge names, so a resource with a path needs no second route."""
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}"


def discovery_challenge(settings: Settings, challenge: str) -> str:
    """A Bearer challenge that also names the metadata (RFC 9728 §5.1), so a client that was refused
    learns where to get a token; unchanged while OAuth access tokens are off."""
    if not settings.oauth_access_tokens or not settings.oauth_resource:
        return challenge
    return f'{challenge}, resource_metadata="{metadata_url(settings.oauth_resource)}"'


@router.get(
    METADATA_PATH,
    summary="OAuth protected-resource metadata (RFC 9728)",
    responses={404: {"description": "OAuth access tokens are not enabled (OAUTH_ACCESS_TOKENS)"}},
)
async def oauth_protected_resource(request: Request) -> Response:
    return metadata_response(resources(request).settings)


def metadata_response(settings: Settings) -> Response:
    if not settings.oauth_access_tokens or not settings.oauth_resource:
        raise NotFound("OAuth access tokens are not enabled on this service")
    return Response(
        orjson.dumps(protected_resource_metadata(settings)),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=3600"},
    )
