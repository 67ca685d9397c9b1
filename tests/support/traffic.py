"""Steady traffic against a running service while a test breaks something: concurrent clients
in a loop (list, get, idempotent create), every answer or transport error recorded with when it
started and finished, so a test can judge the answers before, during and after a fault."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

PAUSE_SECONDS = 0.01  # between one client's requests


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Outcome:
    kind: str  # list, get or create
    started: float  # the event loop's clock
    finished: float
    status: int | None = None
    code: str | None = None  # the problem's `code`, for an error status
    retry_after: str | None = None
    content_type: str | None = None
    error: str | None = None  # the transport error's class, when there was no answer
    key: str | None = None  # the Idempotency-Key (and title) of a create

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class Traffic:
    """Run `worker(n)` as tasks; set `stop` to end them. One user, one existing task to get."""

    client: httpx.AsyncClient
    user_id: str
    token: str
    task_id: int
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, number: int) -> None:
        loop = asyncio.get_running_loop()
        url = f"/api/{self.user_id}/tasks"
        i = 0
        while not self.stop.is_set():
            kind = ("list", "get", "create")[i % 3]
            key = f"w{number}-{i}" if kind == "create" else None
            started = loop.time()
            outcome = Outcome(kind, started, started, key=key)
            try:
                if kind == "list":
                    response = await self.client.get(url, headers=bearer(self.token))
                elif kind == "get":
                    response = await self.client.get(f"{url}/{self.task_id}", headers=bearer(self.token))
                else:
                    response = await self.client.post(
                        url, json={"title": key}, headers={**bearer(self.token), "Idempotency-Key": key}
                    )
                outcome.status = response.status_code
                outcome.retry_after = response.headers.get("retry-after")
                outcome.content_type = response.headers.get("content-type")
                if response.status_code >= 400:
                    outcome.code = response.json().get("code")
            except httpx.HTTPError as exc:
                outcome.error = type(exc).__name__
            outcome.finished = loop.time()
            self.outcomes.append(outcome)
            i += 1
            await asyncio.sleep(PAUSE_SECONDS)

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.started >= start and o.finished <= end]
