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

from .schemas import Sort, Status
from .search import search_pattern


def sort_column(sort: Sort) -> str:
    """The column a sort orders by ("-title" and "title" both order by title)."""
    return sort.value.lstrip("-")


@dataclass(frozen=True, slots=True)
class ListShape:
    """What decides the list SQL text: a finite set, so each statement is built (and prepared by
    asyncpg) once. Free-text filters count only by their presence; their values are parameters."""

    sort: Sort
    status: Status
    search: bool
    after_cursor: bool

    @property
    def column(self) -> str:
        return sort_column(self.sort)

    @property
    def descending(self) -> bool:
        return self.sort.value.startswith("-")

    @classmethod
    def every(cls) -> Iterator[ListShape]:
        """Every shape there is (for checks that look at every list statement)."""
        for sort, status, search, after in itertools.product(Sort, Status, (False, True), (False, True)):
            yield cls(sort, status, search, after)


@dataclass(frozen=True, slots=True)
class ListOptions:
    """What a list request asks for, besides the page size and the cursor."""

    status: Status = Status.all
    sort: Sort = Sort.created_at_desc
    q: str | None = None  # case-insensitive text in title or description

    def shape(self, after_cursor: bool) -> ListShape:
        return ListShape(self.sort, self.status, self.q is not None, after_cursor)

    def filter_arguments(self) -> tuple[Any, ...]:
        """The values of the filters the shape's SQL has parameters for, in their order."""
        return () if self.q is None else (search_pattern(self.q),)

    def bound(self) -> dict[str, str | None]:
        """The options as query-parameter values (None: absent): what a cursor is bound to, and
        what the next page's link repeats."""
        values = {name: getattr(self, name) for name in _OPTION_NAMES}
        return {name: value.value if isinstance(value, Enum) else value for name, value in values.items()}


_OPTION_NAMES = tuple(field.name for field in dataclasses.fields(ListOptions))
