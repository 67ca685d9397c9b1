"""The README's downstream example (examples/downstream_app): a FastAPI app of another team,
tested with the kit's pytest plugin found through the package's `pytest11` entry point only."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from service.settings import REPO_ROOT

EXAMPLE_DIR = REPO_ROOT / "examples" / "downstream_app"
EXAMPLE_TIMEOUT_SECONDS = 120.0


def entry_points_of_this_package() -> dict[str, str]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]


def install_entry_points(site: Path) -> None:
    """What `pip install` writes for this package's entry points, on a folder put on sys.path: the
    example's pytest then loads the plugin as it would for a team that installed the package."""
    info = site / "tasks_service_kit-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tasks-service-kit\nVersion: 0.0.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points_of_this_package().items())
    (info / "entry_points.txt").write_text(f"[pytest11]\n{lines}")


def test_the_package_registers_the_kit_as_a_pytest_plugin():
    assert entry_points_of_this_package() == {"service.testing.plugin": "service.testing.plugin"}


def test_the_downstream_example_passes_with_the_plugin_loaded_by_its_entry_point(tmp_path: Path):
    install_entry_points(tmp_path / "site")
    env = {
        **os.environ,
        # this checkout's `service` (not another editable install), and the entry point above
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(tmp_path / "site")]),
        "PYTEST_ADDOPTS": "",
    }
    env.pop("PYTEST_PLUGINS", None)
    result = subprocess.run(
        # -p no:asyncio: the example is synchronous; this venv's pytest-asyncio would only warn.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "-p", "no:cacheprovider"],
        cwd=EXAMPLE_DIR, env=env, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_SECONDS,
    )  # fmt: skip
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "15 passed" in report and "failed" not in report and "skipped" not in report, report
