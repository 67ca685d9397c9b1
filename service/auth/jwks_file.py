"""JWKS_FILE: the key set read from a local file (air-gapped deployments, tests) instead of fetched.

The key cache treats a read like a fetch: the refresher polls every JWKS_FILE_POLL_SECONDS, and
the file is parsed again only when its modification time, size or inode changed. The same rules
as for fetched keys apply: each key is validated on its own, and a file that cannot be used (gone,
half-written, no usable key) keeps the last good keys.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from .fetch import load_jwks
from .keys import ImportedKeys, JWKSError, JWKSProblem


class JWKSFile:
    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._seen: tuple[int, int, int] | None = None
        self._imported: ImportedKeys | None = None
        self.reads = 0  # times the file was parsed (not merely looked at)

    async def read(self) -> ImportedKeys:
        """The file's keys: parsed again only if the file changed. Raises JWKSError, whose
        message never names the path."""
        return await asyncio.to_thread(self._read_if_changed)

    def _read_if_changed(self) -> ImportedKeys:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise JWKSError(JWKSProblem.UNREACHABLE, f"the key file cannot be read ({exc.strerror})") from None
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if seen == self._seen and self._imported is not None:
            return self._imported
        if stat.st_size > self._max_bytes:
            raise JWKSError(JWKSProblem.TOO_LARGE, f"the key file exceeds the {self._max_bytes}-byte cap")
        try:
            with open(self.path, "rb") as file:
                body = file.read(self._max_bytes + 1)
        except OSError as exc:
            raise JWKSError(JWKSProblem.UNREACHABLE, f"the key file cannot be read ({exc.strerror})") from None
        if len(body) > self._max_bytes:
            raise JWKSError(JWKSProblem.TOO_LARGE, f"the key file exceeds the {self._max_bytes}-byte cap")
        self.reads += 1
        imported = load_jwks(body)  # raises for a file without a usable key: the last good keys stay
        self._seen, self._imported = seen, imported
        return imported
