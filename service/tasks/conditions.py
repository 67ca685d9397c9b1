"""Conditional writes: a task's ETag (`"<id>-<version>"`, strong) and what an If-Match accepts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest

IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"[^"]*"(\s*,\s*(W/)?"[^"]*")*)\s*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
_ETAG_ITEM = re.compile(r'(W/)?"([^"]*)"')
# A version as etag() spells it: decimal, no sign, no leading zero, within PostgreSQL integer.
_VERSION = re.compile(r"[1-9][0-9]{0,9}")
VERSION_MAX = 2**31 - 1


def etag(record: Mapping[str, Any]) -> str:
    return f'"{record["id"]}-{record["version"]}"'


def expected_versions(if_match: str | None, task_id: int) -> list[int] | None:
    """The versions an If-Match header accepts; None when it accepts any (`*`).

    RFC 9110 strong comparison: a tag matches only when it is byte for byte the ETag that
    etag() writes, so `"7-02"` is not `"7-2"`, and a weak tag (`W/"7-2"`) never matches.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    if not _IF_MATCH.fullmatch(if_match):
        raise InvalidRequest(
            "If-Match must be * or a list of quoted ETags", [{"field": "If-Match", "message": "malformed"}]
        )
    versions: list[int] = []
    for weak, tag in _ETAG_ITEM.findall(if_match):  # quoted tags may themselves hold commas
        owner_id, _, version = tag.partition("-")
        if weak or owner_id != str(task_id) or not _VERSION.fullmatch(version) or int(version) > VERSION_MAX:
            continue
        versions.append(int(version))
    return versions  # may be empty: then nothing matches and a present task answers 412
