"""`make interop-latest`'s preparation: the issuer copied without node_modules, its Better Auth
packages locked to the newest release on the registry (never older than the pin)."""

from __future__ import annotations

import json

from support.better_auth import ISSUER_DIR
from support.latest_issuer import better_auth_packages, prepare


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("-")[0].split("."))


def test_the_latest_issuer_is_the_pinned_one_with_better_auth_locked_to_the_newest_release(tmp_path):
    target = tmp_path / "issuer"
    locked = prepare(target)
    pinned = json.loads((ISSUER_DIR / "package.json").read_text())["dependencies"]
    assert set(locked) == set(better_auth_packages(ISSUER_DIR / "package.json")) and "better-auth" in locked
    for name, version in locked.items():
        assert version_tuple(version) >= version_tuple(pinned[name].lstrip("^~")), (name, version)
    assert json.loads((target / "package.json").read_text())["dependencies"]["better-auth"] == locked["better-auth"]
    assert (target / "server.mjs").read_bytes() == (ISSUER_DIR / "server.mjs").read_bytes()
    assert not (target / "node_modules").exists()
