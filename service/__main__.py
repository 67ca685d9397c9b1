"""Command line: `python -m service [run | migrate | doctor [TOKEN | --cookie COOKIE]]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .observability import configure_logging
from .settings import Settings, SettingsError, load_settings


async def migrate(settings: Settings) -> list[str]:
    from .app import open_database
    from .db.pool import connect
    from .schema import prepare_database

    async with contextlib.AsyncExitStack() as stack:
        dsn = await open_database(settings, stack)
        conn = await connect(dsn, settings)
        try:
            return await prepare_database(conn)
        finally:
            await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description="Tasks service for Better Auth apps")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="serve the API (the default)")
    commands.add_parser("migrate", help="apply database migrations and exit")
    doctor = commands.add_parser(
        "doctor", aliases=["jwks"], help="check this deployment against its Better Auth, and a token; say what to fix"
    )
    doctor.add_argument("token", nargs="?", help="a JWT to check (or - to read it from standard input)")
    doctor.add_argument("--cookie", help="a Better Auth session cookie (name=value): check a token fetched with it")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)

    if args.command in ("doctor", "jwks"):
        from .auth.doctor import run_doctor

        token = sys.stdin.read() if args.token == "-" else args.token
        return asyncio.run(run_doctor(settings, sys.stdout, token=token, cookie=args.cookie))

    if args.command == "migrate":
        applied = asyncio.run(migrate(settings))
        print(f"applied: {', '.join(applied) or 'nothing, up to date'}", file=sys.stdout)
        return 0

    import uvicorn

    from .app import create_app
    from .server import server_options

    # uvicorn shuts down gracefully on SIGTERM, then re-raises it; answering that with a no-op
    # makes a requested stop exit 0, as process managers expect.
    signal.signal(signal.SIGTERM, lambda *_: None)
    options = server_options(settings)
    if settings.workers > 1:
        # Each worker process builds its own app (pool, key cache) from the same environment, and
        # writes its metrics where any worker can sum them for /metrics.
        from .metrics import shared_dir_for_workers

        with shared_dir_for_workers():
            uvicorn.run("service.app:create_app_from_env", factory=True, workers=settings.workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
