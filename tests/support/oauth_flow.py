"""An OAuth client of Better Auth's OAuth provider (@better-auth/oauth-provider), driven over HTTP as
a browser and a client app would: register a client, then the authorization-code flow with PKCE
(RFC 7636) and a resource indicator (RFC 8707), which makes the provider issue a JWT access token
(`typ: at+jwt`) whose `aud` is that resource."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

from support.better_auth import BetterAuthUser

REDIRECT_URI = "https://client.example.test/callback"  # never visited: the code is read from the URL


@dataclasses.dataclass(frozen=True)
class OAuthClient:
    client_id: str
    redirect_uri: str


async def register_client(owner: BetterAuthUser, scope: str) -> OAuthClient:
    """POST /api/auth/oauth2/create-client as a signed-in user: a public client (PKCE, no secret)."""
    body = {
        "client_name": "Tasks test client",
        "redirect_uris": [REDIRECT_URI],
        "scope": scope,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    response = await owner.http.post("/api/auth/oauth2/create-client", json=body, headers=_session(owner))
    assert response.status_code in (200, 201), response.text
    return OAuthClient(client_id=response.json()["client_id"], redirect_uri=REDIRECT_URI)


async def authorize_and_get_token(user: BetterAuthUser, client: OAuthClient, scope: str, resource: str) -> str:
    """The user's browser at /oauth2/authorize, then the consent page accepting, then the client at
    /oauth2/token with the PKCE verifier. Returns the access token."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(8)
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    response = await user.http.get("/api/auth/oauth2/authorize", params=params, headers={"Cookie": user.session_cookie})
    assert response.status_code in (302, 303), response.text
    consent_page = urlsplit(response.headers["location"])
    assert consent_page.path == "/consent", response.headers["location"]  # the app's consent page

    # The consent page posts the signed query back with the user's answer.
    body = {"accept": True, "oauth_query": consent_page.query}
    response = await user.http.post("/api/auth/oauth2/consent", json=body, headers=_session(user))
    assert response.status_code == 200, response.text
    callback = urlsplit(response.json()["url"])
    answer = parse_qs(callback.query)
    assert answer["state"] == [state], answer
    assert "code" in answer, answer

    form = {
        "grant_type": "authorization_code",
        "code": answer["code"][0],
        "code_verifier": verifier,
        "redirect_uri": client.redirect_uri,
        "client_id": client.client_id,
        "resource": resource,
    }
    response = await user.http.post("/api/auth/oauth2/token", data=form)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and sorted(tokens["scope"].split()) == sorted(scope.split()), tokens
    return str(tokens["access_token"])


def _session(user: BetterAuthUser) -> dict[str, str]:
    return {"Cookie": user.session_cookie, "Origin": str(user.http.base_url).rstrip("/")}


async def sign_out(user: BetterAuthUser) -> None:
    response = await user.http.post("/api/auth/sign-out", json={}, headers=_session(user))
    assert response.status_code == 200, response.text


async def ban(admin: BetterAuthUser, user: BetterAuthUser) -> None:
    """The admin plugin's ban: the user is flagged and every session of theirs deleted."""
    response = await admin.http.post("/api/auth/admin/ban-user", json={"userId": user.id}, headers=_session(admin))
    assert response.status_code == 200, response.text
