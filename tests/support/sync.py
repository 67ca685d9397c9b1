"""A sync client for the tests of /changes and /events: applies changes to a local copy."""

from __future__ import annotations

from typing import Any

import httpx

from .app import User


def apply_changes(state: dict[int, dict[str, Any]], changes: list[dict[str, Any]]) -> None:
    """What a client does with a page of changes: upserts replace, deletes remove."""
    for change in changes:
        if change["op"] == "upsert":
            state[change["task"]["id"]] = change["task"]
        else:
            assert change["op"] == "delete" and set(change) == {"op", "id"}, change
            state.pop(change["id"], None)


async def sync_once(
    client: httpx.AsyncClient, user: User, state: dict[int, dict[str, Any]], since: str | None, limit: int = 100
) -> str:
    """Follow /changes from `since` until `more` is false; the last `next`."""
    while True:
        params: dict[str, Any] = {"limit": limit, **({"since": since} if since else {})}
        response = await client.get(user.url("/changes"), params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        apply_changes(state, page["changes"])
        since = page["next"]
        if not page["more"]:
            return since


async def server_state(client: httpx.AsyncClient, user: User) -> dict[int, dict[str, Any]]:
    """Every task of `user` as the list returns it."""
    response = await client.get(user.url("?limit=500"), headers=user.headers)
    assert response.status_code == 200, response.text
    return {task["id"]: task for task in response.json()}
