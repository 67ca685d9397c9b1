"""Optional sampling profile of one worker with py-spy (a dev dependency, in the venv that make
builds). `py-spy record --format raw --gil` writes collapsed stacks of the thread
holding the GIL (so idle threads and the event loop's wait in epoll are left out); the summary is
the top functions by own time and by inclusive time, as shares of those samples.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[2]) + "/"
SAMPLE_RATE_HZ = 200
EXTRA_SECONDS = 30
TOP = 25
SCAFFOLDING_SHARE = (
    0.8  # frames on this share of the busiest frame's stacks or more (process start, server) say nothing
)


def find_py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_recording(py_spy: str, pid: int, seconds: float, output: Path, *, native: bool = False) -> subprocess.Popen:
    """Record `pid` for `seconds` in the background; `native` adds C frames (system calls,
    Cython), which the Python-only stacks fold into the nearest Python function."""
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", str(SAMPLE_RATE_HZ),
         "--format", "raw", "--gil", *(["--native"] if native else []), "--output", str(output)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finish_recording(process: subprocess.Popen, seconds: float) -> str:
    try:
        output, _ = process.communicate(timeout=seconds + EXTRA_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=5)
    return output or ""


def summarize(collapsed: Path, top: int = TOP) -> dict[str, object]:
    """Own and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = threads = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_short(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        if frames[0].startswith("Thread._bootstrap"):
            threads += samples  # a thread other than the event loop's (anyio's thread pool, ...)
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    share = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    busiest = max(inclusive.values(), default=0)
    below = [(f, n) for f, n in inclusive.most_common() if n < SCAFFOLDING_SHARE * busiest]
    return {
        "samples": total,
        "other_threads_percent": share(threads),
        "own": [{"function": f, "percent": share(n)} for f, n in own.most_common(top)],
        "inclusive": [{"function": f, "percent": share(n)} for f, n in below[:top]],
        "service_inclusive": [
            {"function": f, "percent": share(n)} for f, n in inclusive.most_common() if "(service/" in f
        ][:top],
    }


def _short(frame: str) -> str:
    """`func (path/to/site-packages/pkg/mod.py:123)` -> `func (pkg/mod.py)`; idle frames kept."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in (REPO_ROOT, "site-packages/", f"python{sys.version_info.major}.{sys.version_info.minor}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name
