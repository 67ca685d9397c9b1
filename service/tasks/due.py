"""Due dates: an all-day date ("YYYY-MM-DD") or an RFC 3339 date-time with an offset.

Both kinds share one sort and filter key, an instant: a date-time is its own instant, and an
all-day date counts as 00:00 UTC of that day. So on one day its all-day tasks come before its
timed ones, and the bounds `due_after=D` (inclusive) and `due_before=D+1` (exclusive) hold
exactly the tasks due on day D in UTC, of both kinds.

A value is kept as the client wrote it (local time and offset) and PostgreSQL subtracts the
offset: RFC 3339 allows offsets up to ±23:59 and the years 0001-9999 in local time, whose UTC
instant can fall in year 0 or 10000, which neither Python's datetime nor PostgreSQL's offset
parser holds, while a PostgreSQL timestamp minus an interval does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATE = re.compile(DATE_PATTERN)
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
DUE_RULE = 'an all-day date "YYYY-MM-DD" or an RFC 3339 date-time with an offset ("2026-05-01T09:30:00+02:00")'
# Either kind, for OpenAPI: `format` lets schema-driven clients (and the fuzzer) build valid values.
DUE_SCHEMA: dict[str, object] = {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]}


@dataclass(frozen=True, slots=True)
class Due:
    """A due date as sent: local date and time, the offset to subtract for UTC, and its kind."""

    local: datetime  # naive
    offset: timedelta
    all_day: bool

    def canonical(self) -> str:
        """One spelling per value (for links, cursors and idempotency fingerprints)."""
        if self.all_day:
            return self.local.date().isoformat()
        minutes = int(self.offset.total_seconds()) // 60
        sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
        return f"{self.local.isoformat()}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def due_arguments(due: Due | None) -> tuple[str | None, timedelta, bool]:
    """The statement parameters of a due date (see queries.DUE_KEY): local time, offset, all-day.
    The local time goes as text: asyncpg sends datetime.min and .max as -infinity and infinity."""
    return (None, timedelta(0), False) if due is None else (due.local.isoformat(), due.offset, due.all_day)


def parse_due(value: str) -> Due:
    """The due date `value` names; ValueError (with the rule) when it is neither kind."""
    if _DATE.fullmatch(value):
        try:
            day = date(int(value[:4]), int(value[5:7]), int(value[8:]))
        except ValueError:
            raise ValueError(f"{value!r} is not a date of the calendar") from None
        return Due(datetime(day.year, day.month, day.day), timedelta(0), all_day=True)
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        raise ValueError(f"must be {DUE_RULE}")
    year, month, day_, hour, minute, second, fraction, zulu, sign, off_hours, off_minutes = found.groups()
    try:
        # Digits past the microsecond are dropped: PostgreSQL keeps microseconds.
        micro = int((fraction or "").ljust(6, "0")[:6])
        local = datetime(int(year), int(month), int(day_), int(hour), int(minute), int(second), micro)
    except ValueError:
        raise ValueError(f"{value!r} is not a date and time of the calendar (leap seconds are not kept)") from None
    if zulu:
        return Due(local, timedelta(0), all_day=False)
    if int(off_hours) > 23 or int(off_minutes) > 59:
        raise ValueError("the offset must be within ±23:59")
    offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
    return Due(local, -offset if sign == "-" else offset, all_day=False)


def due_or_refuse(value: object) -> Due | None:
    """For the body models: None stays None (no due date); anything but a string is refused."""
    if value is None or isinstance(value, Due):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be null or {DUE_RULE}")
    return parse_due(value)
