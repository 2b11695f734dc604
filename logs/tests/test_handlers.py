"""The batched database log handler and `logs.get_logger`, against the real database."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chains.models import Workflow, WorkflowRun
from logs import get_logger
from logs.handlers import DatabaseHandler
from logs.models import LogCount, LogEntry
from rpa_monitor.test import database_env

pytestmark = pytest.mark.django_db

Attach = Callable[..., logging.Logger]


@pytest.fixture
def attach() -> Iterator[Attach]:
    """attach(handler, name) → a DEBUG logger whose records go to `handler` only."""
    attached: list[tuple[logging.Logger, DatabaseHandler, int, bool]] = []

    def attach(handler: DatabaseHandler, name: str = "rpa.handler-test") -> logging.Logger:
        logger = logging.getLogger(name)
        attached.append((logger, handler, logger.level, logger.propagate))
        logger.setLevel(logging.DEBUG)
        logger.propagate = False  # keep the project's own handlers out of it
        logger.addHandler(handler)
        return logger

    yield attach
    for logger, handler, level, propagate in attached:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        handler.close()


def quiet_handler(batch_size: int = 100, flush_interval: float = 3600.0) -> DatabaseHandler:
    # No background flusher: its own connection could not see this test's transaction.
    return DatabaseHandler(batch_size=batch_size, flush_interval=flush_interval, background=False)


def log_inserts(queries: CaptureQueriesContext) -> list[str]:
    # executemany is captured once, as "<n> times: INSERT INTO ...".
    table = LogEntry._meta.db_table
    return [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"] and table in q["sql"]]


def test_it_writes_nothing_until_a_batch_is_full_then_the_whole_batch_at_once(attach: Attach) -> None:
    log = attach(quiet_handler(batch_size=5))
    for i in range(4):
        log.info("line %d", i)
    assert LogEntry.objects.count() == 0
    with CaptureQueriesContext(connection) as queries:
        log.info("line %d", 4)
    (insert,) = log_inserts(queries)
    assert insert.startswith("5 times: ")
    assert sorted(LogEntry.objects.values_list("message", flat=True)) == [f"line {i}" for i in range(5)]
    for i in range(5, 9):
        log.info("line %d", i)
    assert LogEntry.objects.count() == 5
    log.info("line 9")
    assert LogEntry.objects.count() == 10


def test_it_flushes_at_once_on_error_and_above(attach: Attach) -> None:
    log = attach(quiet_handler())
    log.info("starting")
    log.warning("slow page")
    assert LogEntry.objects.count() == 0
    log.error("form rejected")
    assert sorted(LogEntry.objects.values_list("level", flat=True)) == ["ERROR", "INFO", "WARNING"]
    log.critical("giving up")
    assert LogEntry.objects.filter(level="CRITICAL", message="giving up").exists()


def test_it_flushes_when_the_interval_has_passed_on_the_next_record(attach: Attach) -> None:
    handler = quiet_handler(flush_interval=3600)
    log = attach(handler)
    log.info("first")
    assert LogEntry.objects.count() == 0
    handler.flush_interval = 0.05
    time.sleep(0.1)
    log.info("second")
    assert sorted(LogEntry.objects.values_list("message", flat=True)) == ["first", "second"]


def test_it_stores_extra_fields_and_the_rest_of_extra_as_metadata(attach: Attach) -> None:
    log = attach(quiet_handler(batch_size=1))
    workflow = Workflow.objects.create(slug="invoices", name="invoices", command=["true"])
    run = WorkflowRun.objects.create(workflow=workflow)
    log.warning(
        "row skipped",
        extra={
            "workflow_id": "invoices",
            "node_id": "save",
            "run_id": run.pk,
            "rows": 3,
            "when": datetime(2026, 1, 2, tzinfo=UTC),  # not JSON: stored as text
            "path": Path("/data/in/a.csv"),
        },
    )
    log.info("from elsewhere", extra={"component": "custom", "metadata": {"a": 1}, "b": [2]})

    skipped = LogEntry.objects.get(message="row skipped")
    assert (skipped.level, skipped.component) == ("WARNING", "handler-test")  # logger name minus "rpa."
    assert (skipped.workflow_id, skipped.node_id, skipped.run) == ("invoices", "save", run)
    assert skipped.metadata == {"rows": 3, "when": "2026-01-02 00:00:00+00:00", "path": "/data/in/a.csv"}
    custom = LogEntry.objects.get(message="from elsewhere")
    assert (custom.component, custom.workflow_id, custom.node_id) == ("custom", "", "")
    assert custom.metadata == {"a": 1, "b": [2]}


def test_it_uses_the_full_logger_name_as_component_outside_rpa(attach: Attach) -> None:
    log = attach(quiet_handler(batch_size=1), name="vendor.scraper")
    log.info("hello")
    assert LogEntry.objects.get().component == "vendor.scraper"


def test_it_keeps_the_traceback_of_logged_exceptions(attach: Attach) -> None:
    log = attach(quiet_handler())
    try:
        raise ValueError("bad row 7")
    except ValueError:
        log.exception("import failed")
    entry = LogEntry.objects.get()  # ERROR: already stored
    assert (entry.level, entry.message) == ("ERROR", "import failed")
    traceback = entry.metadata["exception"]
    assert traceback.startswith("Traceback (most recent call last)")
    assert "test_it_keeps_the_traceback_of_logged_exceptions" in traceback
    assert traceback.rstrip().endswith("ValueError: bad row 7")


def test_it_keeps_the_traceback_through_get_logger() -> None:
    try:
        {"present": 1}["missing"]
    except KeyError:
        get_logger("handler-test-exc").exception(
            "lookup failed", workflow_id="wf", node_id="n", key="missing"
        )
    entry = LogEntry.objects.get(component="handler-test-exc")
    assert (entry.level, entry.workflow_id, entry.node_id) == ("ERROR", "wf", "n")
    assert entry.metadata["key"] == "missing"
    assert "KeyError: 'missing'" in entry.metadata["exception"]


def test_it_ignores_the_database_layers_own_logs(attach: Attach) -> None:
    handler = quiet_handler(batch_size=1)
    handler.handle(
        logging.makeLogRecord({"name": "django.db.backends", "levelno": logging.ERROR, "msg": "x"})
    )
    # The real thing: with a debug cursor, every query is logged to django.db.backends.
    attach(handler, name="django.db.backends")
    with CaptureQueriesContext(connection) as queries:
        Workflow.objects.count()
    assert queries.captured_queries
    handler.flush()
    assert LogEntry.objects.count() == 0


def test_it_adds_to_log_counts_exactly_the_entries_it_stores(attach: Attach) -> None:
    def totals() -> Counter[tuple[str, str]]:
        return Counter(
            {(lvl, comp): n for lvl, comp, n in LogCount.objects.values_list("level", "component", "count")}
        )

    before = totals()
    handler = quiet_handler(batch_size=4)
    log = attach(handler)
    levels = [logging.DEBUG, logging.INFO, logging.INFO, logging.WARNING, logging.ERROR, logging.INFO]
    for i, level in enumerate(levels * 3):
        log.log(level, "entry %d", i, extra={"component": ["alpha", "beta"][i % 2]})
    handler.flush()

    stored = Counter(LogEntry.objects.values_list("level", "component"))
    assert stored.total() == 18
    assert totals() - before == stored


def test_it_stores_buffered_records_when_the_process_exits(transactional_db: None) -> None:
    code = (
        "import logging, django\n"
        "django.setup()\n"
        "from logs import get_logger\n"
        "from logs.handlers import DatabaseHandler\n"
        "from logs.models import LogEntry\n"
        "for handler in logging.getLogger('rpa').handlers:\n"
        "    if isinstance(handler, DatabaseHandler):\n"
        "        handler.background, handler.flush_interval = False, 3600  # only exit can flush\n"
        "log = get_logger('exit-test')\n"
        "for i in range(3):\n"
        "    log.info(f'line {i}', workflow_id='wf-exit', i=i)\n"
        "print(LogEntry.objects.filter(component='exit-test').count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=database_env(),
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"  # nothing stored before exit
    entries = LogEntry.objects.filter(component="exit-test").order_by("id")
    assert [(e.message, e.workflow_id, e.metadata) for e in entries] == [
        (f"line {i}", "wf-exit", {"i": i}) for i in range(3)
    ]


# --- Regressions: bugs found while writing these tests ---------------------------------------------------


def test_it_keeps_storing_records_after_one_that_cannot_be_encoded(attach: Attach) -> None:
    # Regression (logs/handlers.py DatabaseHandler.flush/_requeue, logs/models.py _row_params): a
    # lone surrogate — e.g. a non-UTF-8 file name from os.listdir (surrogateescape) —
    # makes the bulk insert raise UnicodeEncodeError; flush() puts the whole batch back
    # and every later flush fails on the same row, so nothing is stored again (until
    # 100,000 records are dropped). One bad record must not poison the handler.
    handler = quiet_handler(batch_size=1)
    log = attach(handler)
    log.info("new file /in/\udce9t\udce9.csv")
    log.info("next record")
    handler.flush()
    assert LogEntry.objects.filter(message="next record").exists()


@pytest.mark.parametrize("key", ["level", "message", "exc_info"])
def test_it_keeps_metadata_whose_name_a_logger_parameter_also_has(key: str) -> None:
    # DESIGN §6 promises `info(message, workflow_id, node_id, **metadata)` for any name.
    metadata: dict[str, Any] = {key: "high"}
    get_logger("handler-test-kw").info("battery", **metadata)
    entry = LogEntry.objects.get(component="handler-test-kw")
    assert entry.metadata == {key: "high"}


def test_it_keeps_backslash_u0000_text_in_metadata_unchanged() -> None:
    # Regression (logs/models.py _dump_metadata): NUL is replaced by rewriting the JSON text
    # ("\\u0000" → "\\ufffd"), which also rewrites the six literal characters \u0000
    # when a value holds them (a regex, an escaped string), corrupting that value.
    get_logger("handler-test-bs").info("pattern", pattern="\\u0000", nul="a\x00b")
    entry = LogEntry.objects.get(component="handler-test-bs")
    assert entry.metadata == {"pattern": "\\u0000", "nul": "a\ufffdb"}


@pytest.mark.parametrize("component", [".", ".hidden"])
def test_it_stores_records_of_components_starting_with_a_dot(component: str) -> None:
    # Regression (logs/__init__.py RPALogger.__init__): the logger is named f"rpa.{component}";
    # "rpa..hidden" is not a child of "rpa" in logging's hierarchy (its parent is the
    # root logger), so these records never reach the database handler and are lost.
    # (Masked once get_logger("") has made a real "rpa." logger: hence before that test.)
    get_logger(component).warning("lost?")
    assert LogEntry.objects.filter(component=component, message="lost?").exists()


def test_it_never_stores_an_empty_component() -> None:
    # Regression (logs/handlers.py record_to_row): get_logger("") logs as "rpa." and the component
    # becomes "" (LogEntry.component is not blank=True; DESIGN §13 property 9). Refusing
    # the empty name with ValueError would be a fix too.
    try:
        logger = get_logger("")
    except ValueError:
        return
    logger.info("who am I")
    assert LogEntry.objects.get(message="who am I").component
