"""The app on a real 127.0.0.1 port, in this process (uvicorn.Server), for what an in-process
ASGI transport cannot show: httpx's ASGITransport buffers each whole response, so a response
that streams until told to stop (text/event-stream) needs a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings

from .ports import free_port

START_DEADLINE_SECONDS = 30.0


@dataclass
class LiveServer:
    app: FastAPI
    server: uvicorn.Server
    base_url: str


@contextlib.asynccontextmanager
async def live_server(settings: Settings, graceful_seconds: int = 10) -> AsyncIterator[LiveServer]:
    """Serve `settings`' app until the block ends; then stop as on SIGTERM (graceful)."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", timeout_graceful_shutdown=graceful_seconds
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises a signal it handled once it has stopped: with the default handler that
    # would end the test run, so a handled SIGTERM ends here (as `python -m service run` does).
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(START_DEADLINE_SECONDS):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped while starting")
                await asyncio.sleep(0.02)
        yield LiveServer(app, server, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task
        signal.signal(signal.SIGTERM, previous)
