"""What to do with a token's `kid`, decided from what the key cache knows: a pure function.

The token is not verified yet when this runs, so its `iat` is only a hint. It may decide how
long a request waits for a key (never longer than one cooldown plus a fetch), never whether a
token is accepted: only a published key and a good signature do that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from .keys import KeySet


class KidDecision(Enum):
    USE = "use"  # the set we hold has the key
    WAIT = "wait"  # join the fetch under way, or wait for the next allowed one, then decide again
    REFUSE_UNKNOWN = "refuse_unknown"  # 401: the issuer does not publish this kid
    REFUSE_UNAVAILABLE = "refuse_unavailable"  # 503: we cannot learn whether it does


@dataclass(frozen=True)
class FetchState:
    """What the key cache knows when it decides."""

    held: KeySet | None  # the usable set: None when there is none, or it is too stale
    failing: bool  # the last fetch failed
    last_attempt: float  # wall clock when the last fetch (good or failed) started
    fetch_pending: bool  # a fetch is under way or scheduled: waiting costs no extra fetch
    held_off_until: float = -math.inf  # the JWKS host (429/503) asked for no fetch before then


def decide_kid(
    state: FetchState,
    kid: str,
    issued_at: float,
    now: float,
    *,
    cooldown: float,
    skew: float,
    fetched_since_asked: bool,
) -> KidDecision:
    """`fetched_since_asked`: a fetch allowed after this request arrived has been waited for, so
    this is the last word (no second wait)."""
    held = state.held
    if held is not None and kid in held.keys:
        return KidDecision.USE
    # A set fetched after the token was signed (allowing for skew) would hold its key. A set that
    # seems fetched in the future proves nothing: the wall clock was stepped back since.
    if held is not None and issued_at + skew <= held.fetch_started_at <= now:
        return KidDecision.REFUSE_UNKNOWN
    if not fetched_since_asked and state.held_off_until - now > cooldown:
        # The host asked us to wait longer than a request may: answer now, as during an outage.
        return KidDecision.REFUSE_UNAVAILABLE
    if fetched_since_asked:
        if held is None or state.failing:
            return KidDecision.REFUSE_UNAVAILABLE  # not the token's fault
        return KidDecision.REFUSE_UNKNOWN
    if state.failing and not state.fetch_pending and now < state.last_attempt + cooldown:
        # The host failed moments ago: answer now rather than wait, unless the token may have been
        # signed after that failure. Then its issuer is evidently back (restarted, with new keys),
        # and the next allowed fetch will likely bring the key. `iat` counts whole seconds, so a
        # token from the second of the failure may be newer than it: it waits (at most one
        # cooldown) rather than risk a 503 for the first token of a restarted issuer.
        if issued_at >= math.floor(state.last_attempt):
            return KidDecision.WAIT
        return KidDecision.REFUSE_UNAVAILABLE
    return KidDecision.WAIT
