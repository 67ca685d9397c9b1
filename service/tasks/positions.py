"""Manual order: each task has an integer `position`, ascending from the top of the list.

Keys are gapped, so a move writes one row: a task moved between two others takes the midpoint
of their keys; one moved to the top (or created) takes the first key minus a gap; one moved
last, the last key plus a gap. Only when two neighbours' keys are adjacent (after ~20 moves into
the same spot) is there no room: then `respace` spreads the fewest rows around the spot that make
room, in one bounded batch, and the move is tried again. Keys stay within JavaScript's safe
integers, so the JSON number is exact in a browser.

`key_between` is the rule the move statement applies in SQL (queries.MOVE_POSITION); it is here
in Python for respacing, and so that the rule can be tested as a table.
"""

from __future__ import annotations

POSITION_GAP = 2**20
POSITION_MAX = 2**53 - 1  # Number.MAX_SAFE_INTEGER; the lowest key is -POSITION_MAX
FIRST_WINDOW = 16  # rows on each side of the spot in the first respacing attempt


def key_between(before: int | None, after: int | None) -> int | None:
    """The key for a task placed between two neighbours' keys (None: no neighbour on that side);
    None when there is no room."""
    if before is None and after is None:
        return 0
    if before is None:
        assert after is not None
        return after - POSITION_GAP if after - POSITION_GAP >= -POSITION_MAX else None
    if after is None:
        return before + POSITION_GAP if before + POSITION_GAP <= POSITION_MAX else None
    return before + (after - before) // 2 if after - before >= 2 else None


def respace(keys: list[int], slot: int) -> tuple[int, list[int]]:
    """New keys for a run of the ordered `keys` so that a task fits at index `slot` (before
    keys[slot]): (index of the run's first row, the run's new keys). The run is the smallest one
    around the slot (doubling) whose span has room; the whole list always has."""
    count = len(keys)
    radius = FIRST_WINDOW
    while True:
        start, end = max(0, slot - radius), min(count, slot + radius)
        spread = _spread(keys, start, end, slot)
        if spread is not None or (start == 0 and end == count):
            if spread is None:  # unreachable for fewer than 2^32 tasks; kept total for safety
                raise ValueError("no room for the list's keys")
            return start, spread
        radius *= 2


def _spread(keys: list[int], start: int, end: int, slot: int) -> list[int] | None:
    """Keys for keys[start:end] evenly spaced between its outer neighbours, leaving the slot's
    place empty; None when that still leaves no room at the slot."""
    places = end - start + 1  # the rows, and the empty place at the slot
    low = keys[start - 1] if start > 0 else None
    high = keys[end] if end < len(keys) else None
    if low is None and high is None:
        low = -(places + 1) * POSITION_GAP // 2
        high = low + (places + 1) * POSITION_GAP
    elif low is None:
        assert high is not None
        low = max(high - (places + 1) * POSITION_GAP, -POSITION_MAX - 1)
    elif high is None:
        high = min(low + (places + 1) * POSITION_GAP, POSITION_MAX + 1)
    step = (high - low) // (places + 1)
    if step < 2:
        return None
    spread = [low + step * (place + 1) for place in range(places) if place != slot - start]
    before = spread[slot - start - 1] if slot > start else low if start > 0 else None
    after = spread[slot - start] if slot < end else high if end < len(keys) else None
    return spread if key_between(before, after) is not None else None
