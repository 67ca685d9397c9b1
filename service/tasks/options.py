"""A list request's options as one frozen value.

The route parses them into a `ListOptions`; the list statement is chosen by its `shape`; a
cursor is bound to its `bound()` form and the next page's link repeats that same form. So a new
filter is a field here (with its parameter) and its condition in the list SQL, nothing else.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .due import Due, due_arguments
from .schemas import Sort, Status
from .search import search_pattern

# What each sort orders by, and whether descending. Each is one index range scan (migrations
# 0001 and 0005), except priority: that sort reads the user's rows (bounded by the quota).
SORT_KEYS: dict[Sort, tuple[str, bool]] = {
    Sort.created_at: ("created_at", False),
    Sort.created_at_desc: ("created_at", True),
    Sort.updated_at: ("updated_at", False),
    Sort.updated_at_desc: ("updated_at", True),
    Sort.title: ("title", False),
    Sort.title_desc: ("title", True),
    Sort.due: ("due_at", False),  # no due date is 'infinity': last
    Sort.priority: ("priority", True),  # high first, then the newest
    Sort.position: ("position", False),
}


def sort_column(sort: Sort) -> str:
    """The column a sort orders by ("-title" and "title" both order by title)."""
    return SORT_KEYS[sort][0]


@dataclass(frozen=True, slots=True)
class ListShape:
    """What decides the list SQL text: a finite set, so each statement is built (and prepared by
    asyncpg) once. Filters count only by their presence; their values are parameters. The
    task-model filters (due, priority, label) come as one group: a statement with all of them,
    each a no-op when its parameter is NULL."""

    sort: Sort
    status: Status
    search: bool
    filtered: bool
    after_cursor: bool

    @property
    def column(self) -> str:
        return sort_column(self.sort)

    @property
    def descending(self) -> bool:
        return SORT_KEYS[self.sort][1]

    @classmethod
    def every(cls) -> Iterator[ListShape]:
        """Every shape there is (for checks that look at every list statement)."""
        flags = (False, True)
        for sort, status, search, filtered, after in itertools.product(Sort, Status, flags, flags, flags):
            yield cls(sort, status, search, filtered, after)


@dataclass(frozen=True, slots=True)
class ListOptions:
    """What a list request asks for, besides the page size and the cursor."""

    status: Status = Status.all
    sort: Sort = Sort.created_at_desc
    q: str | None = None  # case-insensitive text in title or description
    due_after: Due | None = None  # due at or after (inclusive)
    due_before: Due | None = None  # due strictly before
    has_due: bool | None = None
    priority: tuple[str, ...] = ()  # any of (sorted, no repeats)
    label: tuple[str, ...] = ()  # all of (sorted, no repeats)

    @property
    def filtered(self) -> bool:
        return any((self.due_after, self.due_before, self.has_due is not None, self.priority, self.label))

    def shape(self, after_cursor: bool) -> ListShape:
        return ListShape(self.sort, self.status, self.q is not None, self.filtered, after_cursor)

    def filter_arguments(self) -> tuple[Any, ...]:
        """The values of the filters the shape's SQL has parameters for, in their order."""
        search = () if self.q is None else (search_pattern(self.q),)
        if not self.filtered:
            return search
        after, before = due_arguments(self.due_after), due_arguments(self.due_before)
        return (
            *search,
            after[0],
            after[1],
            before[0],
            before[1],
            self.has_due,
            list(self.priority) or None,
            list(self.label) or None,
        )

    def bound(self) -> dict[str, str | list[str] | None]:
        """The options as query-parameter values (None: absent; a list: repeated): what a
        cursor is bound to, and what the next page's link repeats."""
        return {name: _query_value(getattr(self, name)) for name in _OPTION_NAMES}


def _query_value(value: Any) -> str | list[str] | None:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Due):
        return value.canonical()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return list(value) or None
    return value  # type: ignore[no-any-return]  # str or None, the remaining field types


_OPTION_NAMES = tuple(field.name for field in dataclasses.fields(ListOptions))
