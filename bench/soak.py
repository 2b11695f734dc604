"""Concurrency soak: web server, two task workers, the scheduler loop and a firehose bot, all at once.

Issue 6, part 4: for `--seconds` (default 60) on a scratch database, zero
"database is locked" (or any OperationalError), zero lost log rows, every run
finished, no 5xx. The scenario is `rpa_monitor.soak` (the test suite runs a short
form of it); this script gives it a scratch database: a SQLite file in a temp
directory, or a PostgreSQL database `rpa_soak_<pid>` created on
postgres://postgres@127.0.0.1:5432 and dropped at the end. Never var/.

    .venv/bin/python bench/soak.py [--seconds 60] [--database sqlite|postgres|both]

Exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _django import ROOT, quiet_console, teardown_django

POSTGRES = "postgres://postgres@127.0.0.1:5432"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="how long the firehose writes (default 60)"
    )
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="sqlite")
    args = parser.parse_args()
    if args.database == "both":
        # Django's settings are read once per process: one process per database.
        codes = [
            subprocess.call([sys.executable, __file__, "--seconds", f"{args.seconds:g}", "--database", db])
            for db in ("sqlite", "postgres")
        ]
        return max(codes)
    return soak(args.database, args.seconds)


def soak(database: str, seconds: float) -> int:
    scratch = Path(tempfile.mkdtemp(prefix=f"rpa-soak-{database}-"))
    pg_name = f"rpa_soak_{os.getpid()}"
    env = {
        "RPA_DATA_DIR": str(scratch),
        "RPA_LOG_DIR": str(scratch / "logs"),
        "DJANGO_SETTINGS_MODULE": "rpa_monitor.settings",
    }
    if database == "sqlite":
        os.environ.pop("DATABASE_URL", None)
        env["RPA_SQLITE_PATH"] = str(scratch / "soak.sqlite3")
    else:
        create_database(pg_name)
        env["DATABASE_URL"] = f"{POSTGRES}/{pg_name}"
    os.environ.update(env)
    try:
        sys.path.insert(0, str(ROOT))
        import django
        from django.core.management import call_command

        django.setup()
        quiet_console()
        call_command("migrate", verbosity=0)
        from rpa_monitor.soak import run_soak

        workdir = scratch / "soak"
        workdir.mkdir()
        report = run_soak(
            database=database,
            workdir=workdir,
            env=dict(os.environ),
            log_dir=scratch / "logs",
            seconds=seconds,
        )
        print(report.text(), flush=True)
        return 0 if report.ok else 1
    finally:
        teardown_django()
        if database == "postgres":
            drop_database(pg_name)
        shutil.rmtree(scratch, ignore_errors=True)


def create_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    sys.exit(main())
