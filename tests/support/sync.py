"""A sync client for the tests of /changes and /events: applies changes to a local copy."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

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


@dataclass
class Block:
    """One server-sent-events block: its fields (`id`, `data`) and comment lines."""

    id: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    def change(self) -> dict[str, Any]:
        assert self.data is not None, self
        return orjson.loads(self.data)  # type: ignore[no-any-return]


class EventReader:
    """Reads a text/event-stream response block by block, each read bounded in time."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.aiter_lines()

    async def block(self, within_seconds: float = 10.0) -> Block | None:
        """The next block; None when the stream ended."""
        found = Block()
        seen = False
        async with asyncio.timeout(within_seconds):
            async for line in self._lines:
                if line == "":
                    if seen:
                        return found
                    continue
                seen = True
                if line.startswith(":"):
                    found.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    found.id = value
                elif name == "data":
                    found.data = value if found.data is None else f"{found.data}\n{value}"
        return found if seen else None

    async def event(self, within_seconds: float = 10.0) -> Block:
        """The next block that carries data (heartbeats skipped)."""
        while True:
            found = await self.block(within_seconds)
            assert found is not None, "the stream ended"
            if found.data is not None:
                return found

    async def events(self, count: int, within_seconds: float = 10.0) -> list[Block]:
        return [await self.event(within_seconds) for _ in range(count)]
