"""A notes API behind Better Auth: who am I, an admin page, and notes for OAuth clients."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

from .auth import BetterAuthVerifier, KeysUnavailable, Unauthorized


async def caller(request: Request) -> dict[str, Any]:
    """The verified token's claims; 401, 403 (banned) or 503 (no keys) otherwise."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "a Bearer token is required")
    verifier: BetterAuthVerifier = request.app.state.verifier
    try:
        claims = await verifier.verify(token)
    except Unauthorized as exc:
        raise HTTPException(401, str(exc)) from None
    except KeysUnavailable:
        raise HTTPException(503, "signing keys are unavailable, retry later") from None
    if verifier.is_banned(claims):
        raise HTTPException(403, "this account is banned")
    return claims


Caller = Annotated[dict[str, Any], Depends(caller)]


def create_app(auth_url: str, *, clock: Callable[[], float] = time.time) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(follow_redirects=False) as http:
            app.state.verifier = BetterAuthVerifier(auth_url, http, clock=clock)
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/me")
    async def me(claims: Caller) -> dict[str, Any]:
        return {
            "user": claims["sub"],
            "anonymous": claims.get("isAnonymous", False),
            "organization": claims.get("activeOrganizationId"),
            "plan": claims.get("plan"),
        }

    @app.get("/admin/stats")
    async def stats(claims: Caller) -> dict[str, int]:
        if "admin" not in str(claims.get("role", "")).split(","):
            raise HTTPException(403, "admins only")
        return {"users": 1}

    @app.get("/notes")
    async def notes(claims: Caller) -> list[str]:
        # An OAuth client's access token must carry the scope; a user's own session JWT need not.
        if "client_id" in claims and "notes:read" not in str(claims.get("scope", "")).split():
            raise HTTPException(403, "scope notes:read is required")
        return ["first note"]

    return app
