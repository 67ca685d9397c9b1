"""Compare bench results: `python -m bench.compare --old a.json [c.json …] --new b.json [d.json …]`,
or `python -m bench.compare --paired a.json [b.json …]` for runs made with `--baseline` (each
file's baseline rows are the old side, its checkout rows the new).

For every (workload, connections) row that both sides have: the median over each side's files of
the service's and PostgreSQL's CPU µs per request, p50, p99 and req/s ÷ /healthz of the same
run, and new ÷ old.
Medians of interleaved runs (old, new, new, old) are what a shared, noisy machine allows; CPU
per request is the steadiest figure of the four.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

FIGURES = (
    # (column, JSON path in a row, format)
    ("svc µs/req", ("service_cpu_us_per_request",), "{:.0f}"),
    ("pg µs/req", ("postgres_cpu_us_per_request",), "{:.0f}"),
    ("p50 ms", ("latency_us", "p50"), "{:.2f}"),
    ("p99 ms", ("latency_us", "p99"), "{:.2f}"),
    ("÷healthz", ("ratio_to_healthz",), "{:.3f}"),
)


def _value(row: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = row
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return None
    return float(value) / 1000 if path[0] == "latency_us" else float(value)


def medians(files: list[Path], version: str | None = None) -> dict[tuple[str, int], dict[str, float]]:
    """(row name, connections) -> column -> median over the files that have it (only the rows of
    `version`, "baseline" or "checkout", when given)."""
    values: dict[tuple[str, int], dict[str, list[float]]] = {}
    for path in files:
        for row in json.loads(path.read_text())["http"]:
            if version is not None and row.get("version", "checkout") != version:
                continue
            key = (row.get("name", row["workload"]), row["connections"])
            for column, where, _ in FIGURES:
                value = _value(row, where)
                if value is not None:
                    values.setdefault(key, {}).setdefault(column, []).append(value)
    return {key: {c: statistics.median(v) for c, v in columns.items()} for key, columns in values.items()}


def table(old: list[Path], new: list[Path], *, paired: bool = False) -> str:
    before, after = (medians(old, "baseline"), medians(new, "checkout")) if paired else (medians(old), medians(new))
    header = f"{'workload':<24}{'conns':>6}" + "".join(f"{c + ' old→new (new/old)':>32}" for c, _, _ in FIGURES)
    lines = [f"medians of {len(old)} old and {len(new)} new runs", header, "-" * len(header)]
    for key in (k for k in after if k in before):
        cells = [change(before[key].get(column), after[key].get(column), fmt, 32) for column, _, fmt in FIGURES]
        lines.append(f"{key[0]:<24}{key[1]:>6}" + "".join(cells))
    return "\n".join(lines)


def change(old: float | None, new: float | None, fmt: str, width: int) -> str:
    """`old → new (new/old)` right-aligned in `width` characters; "-" when either is missing."""
    if old is None or new is None:
        return f"{'-':>{width}}"
    ratio = f" ({new / old:.2f})" if old else ""
    return f"{fmt.format(old) + ' → ' + fmt.format(new) + ratio:>{width}}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, nargs="+", help="JSON results of the old code")
    parser.add_argument("--new", type=Path, nargs="+", help="JSON results of the new code")
    parser.add_argument("--paired", type=Path, nargs="+", help="JSON results of runs made with --baseline")
    args = parser.parse_args(argv)
    if args.paired:
        print(table(args.paired, args.paired, paired=True))
    elif args.old and args.new:
        print(table(args.old, args.new))
    else:
        parser.error("give --old and --new, or --paired")
    return 0


if __name__ == "__main__":
    sys.exit(main())
