"""Conditional writes: a task's ETag (`"<id>-<version>"`, strong) and what an If-Match accepts."""

from __future__ import annotations

import re

import asyncpg

from ..errors import InvalidRequest

IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
_ETAG_ITEM = re.compile(r'(W/)?"([^"]*)"')


def etag(record: asyncpg.Record) -> str:
    return f'"{record["id"]}-{record["version"]}"'


def expected_versions(if_match: str | None, task_id: int) -> list[int] | None:
    """The versions an If-Match header accepts (strong comparison); None when it accepts any."""
    if if_match is None or if_match.strip() == "*":
        return None
    if not _IF_MATCH.fullmatch(if_match):
        raise InvalidRequest(
            "If-Match must be * or a list of quoted ETags", [{"field": "If-Match", "message": "malformed"}]
        )
    versions: list[int] = []
    for weak, tag in _ETAG_ITEM.findall(if_match):  # quoted tags may themselves hold commas
        owner_id, _, version = tag.partition("-")
        if not weak and owner_id == str(task_id) and version.isascii() and version.isdigit() and len(version) < 10:
            versions.append(int(version))
    return versions  # may be empty: then nothing matches and a present task answers 412
