"""`make interop-latest`: copy the interop issuer (tests/interop/issuer) into a folder and resolve its
Better Auth packages to the newest on the npm registry, for the interop suite to run against
(`INTEROP_ISSUER_DIR=<folder>`; the suite's fixtures `npm ci` it like the pinned one).

    python tests/support/latest_issuer.py DIR     # prints each package's resolved version
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

PINNED_DIR = Path(__file__).resolve().parents[1] / "interop" / "issuer"
NPM_TIMEOUT_SECONDS = 300.0


def better_auth_packages(package_json: Path) -> list[str]:
    """better-auth and its @better-auth/* companions: they are released together."""
    dependencies = json.loads(package_json.read_text())["dependencies"]
    return [name for name in dependencies if name == "better-auth" or name.startswith("@better-auth/")]


def prepare(target: Path) -> dict[str, str]:
    """Copy the issuer (without node_modules) to `target` and lock its Better Auth packages to
    `latest`. Returns {package: version} as locked."""
    shutil.copytree(PINNED_DIR, target, ignore=shutil.ignore_patterns("node_modules"), dirs_exist_ok=True)
    packages = better_auth_packages(target / "package.json")
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--save-exact", "--no-audit", "--no-fund", "--loglevel=error",
         *(f"{name}@latest" for name in packages)],
        cwd=target, check=True, stdin=subprocess.DEVNULL, timeout=NPM_TIMEOUT_SECONDS,
    )  # fmt: skip
    locked = json.loads((target / "package-lock.json").read_text())["packages"]
    return {name: locked[f"node_modules/{name}"]["version"] for name in packages}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    pinned = json.loads((PINNED_DIR / "package.json").read_text())["dependencies"]
    for name, version in prepare(Path(argv[0])).items():
        print(f"{name}: latest {version} (pinned {pinned[name]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
