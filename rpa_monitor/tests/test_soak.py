"""The concurrency soak, short form (issue 6, part 4): `bench/soak.py` runs it for a minute.

Web server, two task workers, the scheduler loop and a firehose bot run at once
as real processes against the suite's own database (SQLite file or PostgreSQL:
scripts/test runs the suite on both); `rpa_monitor.soak` is the scenario.
"""

from __future__ import annotations

from pathlib import Path

from django.db import connection

from rpa_monitor.soak import SoakReport, check_errors, run_soak
from rpa_monitor.test import database_env

SECONDS = 8


def test_it_runs_web_workers_scheduler_and_a_firehose_bot_at_once_without_lock_errors_or_lost_rows(
    transactional_db: None, tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    env = {**database_env(), "RPA_DATA_DIR": str(tmp_path), "RPA_LOG_DIR": str(log_dir)}
    report = run_soak(
        database=connection.vendor,
        workdir=tmp_path,
        env=env,
        log_dir=log_dir,
        seconds=SECONDS,
        drain_seconds=8,
        execute_every=2,
    )
    print(report.text())
    assert report.lock_errors == 0, report.text()
    assert report.lost_rows == 0, report.text()
    assert report.duplicated_rows == 0, report.text()
    assert report.http_requests > 0, report.text()
    assert report.http_5xx == 0, report.text()
    assert report.ok, report.text()


def test_it_counts_lock_errors_in_any_output_or_log_file(tmp_path: Path) -> None:
    (tmp_path / "worker.stderr").write_text(
        "soak-probe: OperationalError: database is locked in: BEGIN IMMEDIATE\nfine\n"
    )
    (tmp_path / "rpa_monitor.jsonl").write_text('{"message": "deadlock detected"}\n')
    report = SoakReport("sqlite", 1)
    check_errors(report, [], tmp_path)
    assert report.lock_errors == 2
    assert not report.ok
