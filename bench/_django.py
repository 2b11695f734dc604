"""What the benchmark scripts share: Django on a scratch database, teardown, CLI, profile, rounds.

A plain module, imported as `_django` by the scripts in this folder (run as
`.venv/bin/python bench/<name>.py` from the project root, so `bench/` is on
sys.path). Django is only imported inside the functions, after `setup_django`
has pointed the settings at the scratch directory.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def parse_args(doc: str, repeats: int, repeats_help: str, profile_help: str) -> argparse.Namespace:
    """The scripts' common options: --repeats N (interleaved rounds) and --profile."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    parser.add_argument("--profile", action="store_true", help=profile_help)
    return parser.parse_args()


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A temp directory `rpa-bench-<name>-*`; on exit Django's connections are closed and it is removed."""
    path = Path(tempfile.mkdtemp(prefix=f"rpa-bench-{name}-"))
    try:
        yield path
    finally:
        teardown_django()
        shutil.rmtree(path, ignore_errors=True)


def setup_django(scratch: Path, db: Path, **extra_env: str) -> None:
    """Point Django at a scratch SQLite file (never the developer's), migrate it.

    `scratch` holds the data and log directories; `extra_env` sets further variables
    before the settings are read.
    """
    os.environ.pop("DATABASE_URL", None)  # a set DATABASE_URL would mean PostgreSQL
    os.environ["RPA_SQLITE_PATH"] = str(db)
    os.environ["RPA_DATA_DIR"] = str(scratch)
    os.environ["RPA_LOG_DIR"] = str(scratch / "logs")
    os.environ.update(extra_env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "rpa_monitor.settings"
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    quiet_console()
    call_command("migrate", verbosity=0)


def quiet_console() -> None:
    for name in ("rpa", "django"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                handler.setLevel(logging.CRITICAL + 1)


def flush_rpa_logging() -> None:
    # The runner logs through the batched DatabaseHandler: store what it holds now,
    # from this thread, before the database file is swapped or closed.
    for handler in logging.getLogger("rpa").handlers:
        handler.flush()


def teardown_django() -> None:
    from django.db import connections

    flush_rpa_logging()
    connections.close_all()


def profile(label: str, func: Callable[[], Any], top: int) -> None:
    """cProfile one call of `func`; print the `top` functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    func()
    profiler.disable()
    print(f"\ncProfile of {label} (top {top} by own time):")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def rounds(first: list[float], second: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """The interleaved rounds as `a/b, a/b, ...` (each value times `scale`)."""
    return ", ".join(
        f"{a * scale:.{digits}f}/{b * scale:.{digits}f}" for a, b in zip(first, second, strict=True)
    )
