"""Chromium from Debian (`apt-get install chromium`, tests/support/system-packages.sh) driven by
Playwright for Python. Playwright's own browser download (`playwright install`) is never needed.

Each user gets a browser context of their own (their own cookies); every page's console messages
and uncaught errors are kept, and saved with a screenshot when a test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from service.settings import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS_DIR = REPO_ROOT / ".artifacts" / "e2e"
ADDRESSES = itertools.cycle(range(1, 255))
ACTION_TIMEOUT_MS = 15_000  # clicks, fills, navigations and `expect` on a busy 2-core machine

expect.set_options(timeout=ACTION_TIMEOUT_MS)


def chromium_path() -> str:
    """Debian's Chromium; its absence fails the test (never a skip, never a download)."""
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: run `bash tests/support/system-packages.sh` (apt-get install chromium)"
        pytest.fail(message, pytrace=False)
    return str(CHROMIUM)


@contextlib.asynccontextmanager
async def launched_chromium() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class UserPage:
    name: str
    page: Page
    console: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        """Console errors and uncaught exceptions on this page so far."""
        return [line for line in self.console if line.startswith(("error:", "pageerror:"))]


class Browsing:
    """The pages a test opened, one browser context (cookie jar) per user."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.pages: list[UserPage] = []

    async def open(self, name: str) -> UserPage:
        # Each user as from an address of their own (TEST-NET-1, a header only: nothing is sent
        # there). Better Auth's rate limiter, on as deployed, allows 3 sign-ups or sign-ins per
        # 10 s from one address; without this every test user would share 127.0.0.1's.
        address = f"192.0.2.{next(ADDRESSES)}"
        context = await self.browser.new_context(
            base_url=self.base_url, extra_http_headers={"X-Forwarded-For": address}
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        page = await context.new_page()
        user = UserPage(name, page)

        def on_console(message: ConsoleMessage) -> None:
            user.console.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: user.console.append(f"pageerror: {error}"))
        self.pages.append(user)
        return user

    async def save_artifacts(self, test_name: str) -> Path:
        """A screenshot and the console log of every page, under .artifacts/e2e/<test>/."""
        directory = ARTIFACTS_DIR / re.sub(r"[^\w.-]+", "_", test_name)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for user in self.pages:
            with contextlib.suppress(Exception):  # a crashed page still gets its console log
                await user.page.screenshot(path=directory / f"{user.name}.png", full_page=True)
            lines = [f"url: {user.page.url}", *user.console]
            (directory / f"{user.name}.console.log").write_text("\n".join(lines) + "\n")
        return directory

    async def close(self) -> None:
        for user in self.pages:
            await user.page.context.close()
