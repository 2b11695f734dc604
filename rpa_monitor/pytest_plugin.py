"""pytest plugin that runs before Django's settings are read (`-p rpa_monitor.pytest_plugin`).

It gives every test process and its children one SECRET_KEY and an empty STATIC_ROOT, each test
process a runtime directory of its own, and turns the fast test password hasher on for the
processes the tests start; both must be in the environment before
`rpa_monitor.settings` is imported, which pytest-django does before any conftest.py is loaded.

Why a directory per process: under pytest-xdist each worker has its own test database
(pytest-django suffixes its name: `test_rpa_monitor.sqlite3_gw0`, `test_rpa_gw0`), so run ids
start at 1 in every worker, while everything else a run writes — log files, run spools,
file-trigger inboxes, mail — lives under RPA_DATA_DIR. Two workers (or a test run and the
developer's own server) sharing that directory would read and write each other's files. So the
tests of worker `gw<n>` use `<RPA_DATA_DIR or var/>/test/gw<n>/` and a serial run uses
`.../test/main/`; the processes a test starts inherit that through the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

# With DEBUG off (the default) and no SECRET_KEY, the web application refuses to start and every
# manage.py prints a warning (rpa_monitor/startup.py). One key for this process and every child
# keeps sessions and signatures valid across them.
os.environ.setdefault("SECRET_KEY", "rpa-monitor-test-suite-key-not-for-production-0123456789abcdef")
# WhiteNoise serves STATIC_ROOT and warns at start-up when it does not exist (production has run
# collectstatic); tests serve no static files, an empty directory keeps them quiet.
_static_root = BASE_DIR / "var" / "test-static"
_static_root.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("STATIC_ROOT", str(_static_root))


def data_dir_for_tests() -> Path:
    """This test process's RPA_DATA_DIR: one per pytest-xdist worker, `main` without xdist."""
    # xdist workers inherit the controller's environment, where this plugin already ran:
    # RPA_TEST_DATA_ROOT keeps the directory the developer chose (or var/) for them.
    root = os.environ.get("RPA_TEST_DATA_ROOT") or os.environ.get("RPA_DATA_DIR") or str(BASE_DIR / "var")
    os.environ["RPA_TEST_DATA_ROOT"] = root
    return Path(root) / "test" / (os.environ.get("PYTEST_XDIST_WORKER") or "main")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    data_dir = data_dir_for_tests()
    os.environ["RPA_DATA_DIR"] = str(data_dir)
    os.environ["RPA_LOG_DIR"] = str(data_dir / "logs")
    # Read by the settings of every process a test starts (honoured against test databases only).
    os.environ["RPA_TEST_FAST_HASHER"] = "1"
