"""`--baseline REF`: an older commit's service, benched in the same run as this checkout.

The commit is checked out once into `.bench/baseline/<commit>` (a detached `git worktree`), and
its service runs from there (`PYTHONPATH`), against the same database, JWKS host, tokens and wrk
as this checkout's: each workload at each connection count runs on one, then the other, the
order alternating, so that a burst of other load on a shared machine hits both alike. The
database is migrated by this checkout first; an older service applies its own migrations,
which are already there.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from service.settings import REPO_ROOT

from .database import BenchSetupError

GIT_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Baseline:
    ref: str
    commit: str
    path: Path


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchSetupError(f"git {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        raise BenchSetupError(f"git {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def check_out(ref: str, bench_dir: Path) -> Baseline:
    """The commit `ref` names, checked out under `bench_dir/baseline/` (reused when there)."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = (bench_dir / "baseline" / commit).resolve()
    if not (path / "service" / "__init__.py").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _git("worktree", "prune")
        _git("worktree", "add", "--detach", "--force", str(path), commit)
    return Baseline(ref, commit, path)
