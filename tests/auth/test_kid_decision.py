"""The unknown-`kid` decision as a table: what the key cache holds, the token's unverified `iat`,
the time, and whether a fetch has already been waited for -> use, wait, or refuse (401 or 503)."""

from __future__ import annotations

import math

import pytest

from service.auth.claims import issued_at_hint
from service.auth.keys import KeySet
from service.auth.kid_decision import FetchState, KidDecision, decide_kid

NOW = 1_800_000_000.0
COOLDOWN = 5.0
SKEW = 30.0
KID = "k-known"

USE, WAIT = KidDecision.USE, KidDecision.WAIT
UNKNOWN, UNAVAILABLE = KidDecision.REFUSE_UNKNOWN, KidDecision.REFUSE_UNAVAILABLE


def held(fetched_at: float, *kids: str) -> KeySet:
    return KeySet(
        keys=dict.fromkeys(kids, None),  # type: ignore[arg-type]  # the decision reads only the kids
        fetch_started_at=fetched_at,
        usable_until=fetched_at + 3600,
        generation=0,
    )


def row(
    expected: KidDecision,
    id: str,
    *,
    keys: KeySet | None,
    iat: float = NOW,
    failing: bool = False,
    last_attempt: float | None = None,
    pending: bool = False,
    fetched_since_asked: bool = False,
) -> object:
    attempt = last_attempt if last_attempt is not None else (keys.fetch_started_at if keys else -math.inf)
    given = FetchState(held=keys, failing=failing, last_attempt=attempt, fetch_pending=pending)
    return pytest.param(given, iat, fetched_since_asked, expected, id=id)


# fmt: off
ROWS = [
    # -- first look: the key is held ---------------------------------------------------------------------------
    row(USE, "held-kid-is-used", keys=held(NOW - 60, KID)),
    row(USE, "held-kid-is-used-while-the-host-fails", keys=held(NOW - 60, KID), failing=True, last_attempt=NOW - 1),
    # -- first look: unknown kid, the host fine ----------------------------------------------------------------
    row(UNKNOWN, "set-fetched-after-the-token-beyond-skew-refuses-at-once",
        keys=held(NOW - 60, "other"), iat=NOW - 60 - SKEW - 1),
    row(WAIT, "set-fetched-within-skew-of-the-token-waits", keys=held(NOW - 60, "other"), iat=NOW - 60 - SKEW + 1),
    row(WAIT, "token-newer-than-the-set-waits", keys=held(NOW - 60, "other")),
    row(WAIT, "set-seemingly-fetched-in-the-future-clock-stepped-back-waits",
        keys=held(NOW + 3600, "other"), iat=NOW - 60),
    row(WAIT, "no-set-yet-waits-for-a-fetch", keys=None),
    row(UNKNOWN, "missing-or-broken-iat-waits-least", keys=held(NOW - 60, "other"), iat=-math.inf),
    row(WAIT, "far-future-iat-can-only-make-it-wait-bounded", keys=held(NOW - 60, "other"), iat=1e10),
    # -- first look: the host failing --------------------------------------------------------------------------
    row(UNAVAILABLE, "failing-inside-cooldown-token-older-than-the-failure-503-at-once",
        keys=held(NOW - 600, "other"), failing=True, last_attempt=NOW - 1, iat=NOW - 2),
    row(UNAVAILABLE, "failing-inside-cooldown-token-from-the-second-before-the-failure-503-at-once",
        keys=held(NOW - 600, "other"), failing=True, last_attempt=NOW - 1, iat=NOW - 2),
    row(WAIT, "failing-token-from-the-second-of-the-failure-waits-iat-counts-whole-seconds",
        keys=held(NOW - 600, "other"), failing=True, last_attempt=NOW - 1 + 0.7, iat=NOW - 1),
    row(WAIT, "failing-inside-cooldown-token-issued-after-the-failure-waits-issuer-is-back",
        keys=held(NOW - 600, "other"), failing=True, last_attempt=NOW - 3, iat=NOW - 1),
    row(WAIT, "no-set-failing-token-issued-after-the-failure-waits",
        keys=None, failing=True, last_attempt=NOW - 3, iat=NOW - 1),
    row(UNAVAILABLE, "no-set-failing-inside-cooldown-503-at-once",
        keys=None, failing=True, last_attempt=NOW - 1, iat=NOW - 100),
    row(WAIT, "failing-but-a-fetch-is-pending-joins-it",
        keys=held(NOW - 600, "other"), failing=True, last_attempt=NOW - 1, pending=True, iat=NOW - 100),
    row(WAIT, "failing-cooldown-over-tries-a-fetch",
        keys=held(NOW - 600, "other"), failing=True, last_attempt=NOW - COOLDOWN, iat=NOW - 100),
    # -- after a fetch allowed since the request arrived: the last word ----------------------------------------
    row(USE, "after-fetch-held-kid-is-used", keys=held(NOW, KID), fetched_since_asked=True),
    row(UNKNOWN, "after-fetch-still-unknown-401", keys=held(NOW, "other"), fetched_since_asked=True),
    row(UNAVAILABLE, "after-failed-fetch-with-stale-keys-503",
        keys=held(NOW - 600, "other"), failing=True, last_attempt=NOW, fetched_since_asked=True),
    row(UNAVAILABLE, "after-failed-fetch-no-set-503",
        keys=None, failing=True, last_attempt=NOW, fetched_since_asked=True),
]
# fmt: on


@pytest.mark.parametrize("fetch_state, issued_at, fetched_since_asked, expected", ROWS)
def test_unknown_kid_decision(fetch_state, issued_at, fetched_since_asked, expected):
    decision = decide_kid(
        fetch_state, KID, issued_at, NOW, cooldown=COOLDOWN, skew=SKEW, fetched_since_asked=fetched_since_asked
    )
    assert decision is expected


@pytest.mark.parametrize(
    "claims, expected",
    [
        pytest.param({"iat": 1_700_000_000}, 1_700_000_000.0, id="integer"),
        pytest.param({"iat": 1_700_000_000.5}, 1_700_000_000.5, id="fraction"),
        pytest.param({}, -math.inf, id="missing"),
        pytest.param({"iat": "1700000000"}, -math.inf, id="string"),
        pytest.param({"iat": True}, -math.inf, id="bool"),
        pytest.param({"iat": math.nan}, -math.inf, id="nan"),
        pytest.param({"iat": math.inf}, -math.inf, id="infinity"),
        pytest.param({"iat": 10**400}, -math.inf, id="too-large-for-a-float"),
        pytest.param({"iat": [1]}, -math.inf, id="list"),
    ],
)
def test_unverified_iat_hint_is_a_finite_number_or_waits_least(claims, expected):
    assert issued_at_hint(claims) == expected
