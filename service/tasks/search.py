"""The `q` search text as an ILIKE pattern: a substring match, case-insensitive."""

from __future__ import annotations


def search_pattern(text: str) -> str:
    """The ILIKE pattern that finds `text` anywhere: its wildcards and escape taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
