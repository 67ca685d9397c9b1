"""The `search` workload: `GET /api/{user}/tasks?q=…` for two users of their own, one with 1,000
tasks and one with 100,000, and terms of four classes:

- `rare`: a place name that is in 5 of the user's tasks (the trigram index finds them; the page
  is read by id);
- `common`: a word in 5-10 % of the tasks (thousands for the big user: more than the index
  lookup's 1,001 candidates, so the sort index is walked and filtered);
- `short`: two letters that match most tasks (no trigram: the index cannot help, but the walk
  fills a page after few rows);
- `short-miss`: two letters that match nothing, the worst case: every one of the user's rows
  is read and tested.

Titles and notes come from a fixed vocabulary, so the number of matches of every term is known
from the data; the seeding step counts them with the service's own ILIKE pattern, and the smoke
check asks the service for each term and compares.

The users are seeded as the superuser with one INSERT … SELECT FROM generate_series each, with
the quota counter's trigger off for the load (one upsert of the same counter row per task would
cost more than the insert); the counter row is then written with the real count. The quota
(MAX_TASKS_PER_USER, 10,000 by default) is checked on creates only, and the bench never writes
to these users, so the 100,000-task user needs no setting: it stands for a deployment that
raised the quota.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .database import connect

RARE_REPEATS = 5  # each rare word is in this many of a user's tasks

VERBS = ("Buy", "Call", "Email", "Fix", "Write", "Review", "Book", "Pay", "Renew", "Cancel")
OBJECTS = (
    "milk", "the bank", "the dentist", "the invoice", "the quarterly report", "a new bike", "flights",
    "the hotel", "groceries", "the slides", "the budget", "my passport", "concert tickets",
    "the team meeting", "garden tools", "the tax return", "the laundry", "car insurance", "the contract",
    "a birthday gift",
)  # fmt: skip
NOTES = (
    "ask Anna about the deadline", "bring the receipts", "check the budget first", "see the email thread",
    "before Friday", "after the team meeting",
)  # fmt: skip
RARE_WORDS = ("Zanzibar", "Reykjavik", "Tbilisi", "Oaxaca", "Ushuaia", "Windhoek", "Kathmandu", "Valparaiso")

TERMS: dict[str, tuple[str, ...]] = {
    "rare": tuple(word.lower() for word in RARE_WORDS),
    "common": ("review", "invoice", "meeting"),
    "short": ("ca", "th"),
    "short-miss": ("qx", "zq"),
}
TERM_CLASSES = tuple(TERMS)


@dataclass(frozen=True)
class SearchUser:
    label: str  # "1k", "100k": the row label in the table
    tasks: int

    @property
    def user_id(self) -> str:
        # 32 hex characters like the other bench users, never equal to one (md5('bench' || n)).
        return hashlib.md5(f"bench-search-{self.tasks}".encode()).hexdigest()


SEARCH_USERS = (SearchUser("1k", 1_000), SearchUser("100k", 100_000))

# Task n of the user: a verb and an object (every combination, evenly), a note on every third,
# a rare place name on RARE_REPEATS * len(RARE_WORDS) tasks spread over the user's history; one
# task every 5 minutes from 2024 on. $1 user id, $2 tasks, $3 the stride between rare words.
_SEED_SQL = """
INSERT INTO tasks (user_id, title, description, completed, created_at, updated_at)
SELECT $1,
       verb[1 + n % cardinality(verb)] || ' ' || object[1 + (n / cardinality(verb)) % cardinality(object)]
           || CASE WHEN n % $3 = 0 THEN ' in ' || rare[1 + (n / $3) % cardinality(rare)] ELSE '' END,
       CASE WHEN n % 3 = 0 THEN 'Notes: ' || note[1 + (n / 3) % cardinality(note)] ELSE '' END,
       n % 4 = 0,
       ts, ts
FROM generate_series(1, $2::int) AS n
CROSS JOIN (SELECT $4::text[], $5::text[], $6::text[], $7::text[]) AS words(verb, object, note, rare)
CROSS JOIN LATERAL (SELECT timestamptz '2024-01-01 00:00:00+00' + make_interval(mins => 5 * n)) AS c(ts)
"""


def rare_stride(tasks: int) -> int:
    return max(1, tasks // (RARE_REPEATS * len(RARE_WORDS)))


async def seed_search_users(dsn: str, progress: Callable[[str], None]) -> dict[str, Any]:
    """Seed the search users unless they already hold their tasks (`--reuse-data`, or a database
    seeded by an earlier run); return, per user, its tasks, the seconds it took and the number of
    matches of every term."""
    conn = await connect(dsn)
    try:
        has_counter = await conn.fetchval("SELECT to_regclass('task_counts') IS NOT NULL")
        users: dict[str, Any] = {}
        seeded = False
        for user in SEARCH_USERS:
            started = time.perf_counter()
            held = await conn.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", user.user_id)
            if held != user.tasks:
                progress(f"seeding the search user with {user.tasks:,} tasks")
                async with conn.transaction():
                    # Superuser only: ordinary triggers (the quota counter's) do not fire in this transaction.
                    await conn.execute("SET LOCAL session_replication_role = replica")
                    await conn.execute("DELETE FROM tasks WHERE user_id = $1", user.user_id)
                    await conn.execute(
                        _SEED_SQL, user.user_id, user.tasks, rare_stride(user.tasks),
                        list(VERBS), list(OBJECTS), list(NOTES), list(RARE_WORDS),
                    )  # fmt: skip
                    if has_counter:
                        await conn.execute(
                            "INSERT INTO task_counts (user_id, tasks) VALUES ($1, $2)"
                            " ON CONFLICT (user_id) DO UPDATE SET tasks = EXCLUDED.tasks",
                            user.user_id,
                            user.tasks,
                        )
                seeded = True
            users[user.label] = {
                "user_id": user.user_id,
                "tasks": user.tasks,
                "seed_seconds": round(time.perf_counter() - started, 2),
                "matches": await _matches(conn, user.user_id),
            }
        if seeded:
            await conn.execute("VACUUM (ANALYZE) tasks")  # statistics, and the GIN index's pending entries merged
        if has_counter:
            counted = await conn.fetch(
                "SELECT user_id, tasks FROM task_counts WHERE user_id = ANY($1::text[])",
                [user.user_id for user in SEARCH_USERS],
            )
            for user in SEARCH_USERS:
                users[user.label]["task_counts"] = next(
                    (r["tasks"] for r in counted if r["user_id"] == user.user_id), None
                )
        return {"users": users, "seeded": seeded, "quota_counter": bool(has_counter)}
    finally:
        await conn.close()


async def _matches(conn: Any, user_id: str) -> dict[str, dict[str, int]]:
    """The number of the user's tasks each term finds, by the service's own pattern."""
    found: dict[str, dict[str, int]] = {}
    for term_class, terms in TERMS.items():
        found[term_class] = {}
        for term in terms:
            found[term_class][term] = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE user_id = $1 AND (title ILIKE $2 OR description ILIKE $2)",
                user_id,
                f"%{term}%",  # the service's pattern for a term without wildcards
            )
    return found


@dataclass(frozen=True)
class SearchRun:
    """One wrk run of the search workload: one user, one class of terms."""

    user: SearchUser
    term_class: str

    @property
    def name(self) -> str:
        return f"search {self.user.label} {self.term_class}"

    def write_data_file(self, path: Path, issuer: Any) -> Path:
        """tasks.lua's data file for this run: the user, a fresh token, its terms in place of task ids."""
        token = issuer.issue_token(self.user.user_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{self.user.user_id} {token} {','.join(TERMS[self.term_class])}\n")
        tmp.replace(path)
        return path


def describe_matches(seeded: dict[str, Any]) -> str:
    """ "1k: rare 5, common 50-111, ...": the range of matches per class of terms, per user."""
    parts = []
    for label, user in seeded["users"].items():
        classes = []
        for term_class, counts in user["matches"].items():
            low, high = min(counts.values()), max(counts.values())
            classes.append(f"{term_class} {low:,}" + (f"-{high:,}" if high != low else ""))
        parts.append(f"{label}: " + ", ".join(classes))
    return "; ".join(parts)


def search_runs() -> list[SearchRun]:
    return [SearchRun(user, term_class) for user in SEARCH_USERS for term_class in TERM_CLASSES]


def smoke_search(base_url: str, issuer: Any, matches: dict[str, Any], timeout: float) -> list[str]:
    """Ask the service for every term of every user; return what disagrees with the seeded counts
    (a page holds at most the default 100 tasks)."""
    problems = []
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        for user in SEARCH_USERS:
            headers = {"Authorization": f"Bearer {issuer.issue_token(user.user_id)}"}
            for term_class, terms in TERMS.items():
                for term in terms:
                    response = client.get(f"/api/{user.user_id}/tasks", params={"q": term}, headers=headers)
                    expected = min(matches[user.label]["matches"][term_class][term], 100)
                    if response.status_code != 200 or len(response.json()) != expected:
                        problems.append(
                            f"{user.label} q={term}: {response.status_code}, expected {expected} tasks: {response.text[:200]}"
                        )
    return problems
