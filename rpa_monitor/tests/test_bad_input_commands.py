"""Bad arguments for every management command (issue 6 part 7, DESIGN §9-10).

Through `call_command`: unknown and malformed ids, bad JSON, dates, ages, sizes,
intervals, logins and output paths raise CommandError naming the argument, in one
line, and write nothing (no row, no export file). Through real processes: exit
status 1 or 2, the reason on the last line of stderr, never a traceback.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import models
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from hypothesis import given
from hypothesis import strategies as st

from chains.models import Chain, ChainRun, ChainStep, Workflow, WorkflowRun
from logs.models import LogEntry
from logs.retention import parse_age
from rpa_monitor.test import manage
from rpa_monitor.tests.badinput import HAND_PICKED, JSON_TEXT, SURROGATE_TEXT, TEXT, Tally, table_state
from triggers.models import Trigger, TriggerFire

pytestmark = pytest.mark.django_db

tally = Tally("commands")
_summary = tally.fixture()

TABLES: list[type[models.Model]] = [
    Workflow,
    Chain,
    ChainStep,
    ChainRun,
    WorkflowRun,
    Trigger,
    TriggerFire,
    LogEntry,
    User,
    DBTaskResult,
]
ARG_TEXT = st.one_of(TEXT, SURROGATE_TEXT, st.sampled_from(HAND_PICKED))


@pytest.fixture
def world() -> None:
    Workflow.objects.create(slug="bot", name="bot", command=["true"])
    chain = Chain.objects.create_with_steps("nightly", "Nightly", ["bot"])
    Trigger.objects.create(name="off", trigger_type="manual", chain=chain, enabled=False)
    LogEntry.objects.create(level="INFO", component="runner", message="old", workflow_id="bot")


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """Where exports go; it must stay empty after a refused export (no partial or temp file)."""
    directory = tmp_path / "exports"
    directory.mkdir()
    return directory


def refused(*args: str, names: str = "") -> str:
    """Run a command that must refuse its arguments: CommandError, one line, nothing written."""
    before = table_state(*TABLES)
    tally.count()
    try:
        call_command(*args)
    except CommandError as exc:
        message = str(exc)
    except Exception:
        tally.server_error()  # a traceback: what a 500 is to a command
        raise
    else:
        pytest.fail(f"{args!r} was accepted")
    assert "\n" not in message.strip(), message
    assert names in message, (names, message)
    assert table_state(*TABLES) == before, f"{args!r} wrote rows"
    return message


# --- each command, hand-picked ------------------------------------------------------------------

BAD_PARAMS = [
    "{",
    "[]",
    "null",
    '"text"',
    "1",
    "NaN",
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": 1e400}',
    '{"a": "\\u0000"}',
    '{"a": "\\ud800"}',
    '{"\\udfff": 1}',
    "9" * 5000,
    "[" * 100_000,
    "{'single': 'quotes'}",
    "",
]


@pytest.mark.parametrize("command", ["run_chain", "run_workflow"])
@pytest.mark.parametrize(
    "target",
    [
        "ghost",
        "123",
        "-1",
        "",
        " ",
        "nightly ",
        "a\x00b",
        "\udcff",
        "x" * 100_000,
        "../bot",
        "bot\n",
        "9" * 40,
    ],
)
def test_run_commands_refuse_unknown_targets(world: None, command: str, target: str) -> None:
    message = refused(command, target)
    assert "does not exist" in message or "unknown workflow" in message


@pytest.mark.parametrize(("command", "target"), [("run_chain", "nightly"), ("run_workflow", "bot")])
@pytest.mark.parametrize("params", BAD_PARAMS)
def test_run_commands_refuse_bad_params(world: None, command: str, target: str, params: str) -> None:
    refused(command, target, "--params", params, names="--params")


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("abc", "--trigger"),
        ("", "--trigger"),
        ("1.5", "--trigger"),
        ("0x10", "--trigger"),
        ("9" * 5000, "--trigger"),
        ("-1", "does not exist"),
        ("0", "does not exist"),
        ("9" * 40, "does not exist"),
    ],
)
def test_fire_triggers_refuses_bad_trigger_ids(world: None, value: str, names: str) -> None:
    refused("fire_triggers", "--trigger", value, names=names)


def test_fire_triggers_refuses_a_disabled_trigger(world: None) -> None:
    refused("fire_triggers", "--trigger", str(Trigger.objects.get().pk), names="disabled")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--interval", "0"], "--interval"),
        (["--interval", "-5"], "--interval"),
        (["--interval", "nan"], "--interval"),  # used to tick without pause
        (["--interval", "inf", "--max-ticks", "1"], "--interval"),  # used to overflow the wait
        (["--interval", "1e300"], "--interval"),
        (["--interval", "abc"], "--interval"),
        (["--interval", ""], "--interval"),
        (["--max-ticks", "0"], "--max-ticks"),
        (["--max-ticks", "-1"], "--max-ticks"),
        (["--max-ticks", "1.5"], "--max-ticks"),
        (["--max-ticks", "x"], "--max-ticks"),
    ],
)
def test_run_scheduler_refuses_bad_intervals(args: list[str], names: str) -> None:
    refused("run_scheduler", *args, names=names)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--older-than", ""], "--older-than"),
        (["--older-than", "90"], "--older-than"),
        (["--older-than", "d"], "--older-than"),
        (["--older-than", "0d"], "--older-than"),
        (["--older-than", "-5d"], "--older-than"),
        (["--older-than", "90x"], "--older-than"),
        (["--older-than", "1.5d"], "--older-than"),
        (["--older-than", "9" * 30 + "d"], "--older-than"),  # used to overflow timedelta
        (["--older-than", "999999w"], "--older-than"),  # used to overflow the date
        (["--older-than", "9" * 5000 + "d"], "--older-than"),
        (["--older-than", "\x00"], "--older-than"),
        (["--older-than", "\udcff"], "--older-than"),
        (["--older-than", "90d", "--batch-size", "0"], "--batch-size"),
        (["--older-than", "90d", "--batch-size", "-1"], "--batch-size"),
        (["--older-than", "90d", "--batch-size", "abc"], "--batch-size"),
        (["--older-than", "90d", "--batch-size", "9" * 30], "--batch-size"),  # used to break the LIMIT
        (["--older-than", "90d", "--dry-run", "--batch-size", "-3"], "--batch-size"),
    ],
)
def test_purge_logs_refuses_bad_ages_and_sizes(world: None, args: list[str], names: str) -> None:
    refused("purge_logs", *args, names=names)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--start", "2026-13-45"], "start"),
        (["--start", "yesterday"], "start"),
        (["--start", "0000-01-01"], "start"),
        (["--start", "9999-12-31T23:59:59-14:00"], "start"),
        (["--start", "\udcff"], "start"),
        (["--start", "\x00"], "start"),
        (["--end", "2026-02-30"], "end"),
        (["--end", "2026-11-24T25:00"], "end"),
        (["--start", "2026-11-25", "--end", "2026-11-24"], "start"),
        (["--level", "LOUD"], "--level"),
        (["--level", "\x00"], "--level"),
        (["--component", "a\x00b"], "--component"),
        (["--component", "\udcff"], "--component"),
        (["--workflow", "\x00"], "--workflow"),
    ],
)
def test_export_logs_refuses_bad_ranges_and_filters(
    world: None, out_dir: Path, args: list[str], names: str
) -> None:
    refused("export_logs", *args, "--output", str(out_dir / "logs.zip"), names=names)
    assert not list(out_dir.iterdir()), "a refused export left a file"


@pytest.mark.parametrize(
    "output",
    [
        "{missing}/logs.zip",
        "{file}/logs.zip",  # a directory that is a file
        "{dir}",  # the output is a directory
        "",
        "/proc/rpa-logs.zip",
        "{dir}/a\x00b.zip",
        "{dir}/\udcff/logs.zip",
        "{dir}/" + "x" * 300 + ".zip",  # longer than a file name may be: used to be an OSError
    ],
)
def test_export_logs_refuses_unwritable_outputs(world: None, out_dir: Path, output: str) -> None:
    (out_dir.parent / "a-file").write_text("not a directory")
    path = output.format(missing=out_dir / "missing", file=out_dir.parent / "a-file", dir=out_dir)
    message = refused("export_logs", "--output", path)
    assert any(words in message for words in ("--output", "cannot write", "is a directory")), message
    assert not list(out_dir.iterdir()), "a refused export left a file"


def test_export_logs_keeps_an_existing_file_when_refused(world: None, out_dir: Path) -> None:
    target = out_dir / "logs.zip"
    target.write_bytes(b"the previous export")
    refused("export_logs", "--start", "not-a-date", "--output", str(target), names="start")
    assert target.read_bytes() == b"the previous export"
    assert [p.name for p in out_dir.iterdir()] == ["logs.zip"]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--username", ""], "--username"),  # used to raise ValueError from create_superuser
        (["--username", "a\x00b"], "--username"),  # stored as is (SQLite), a DataError (PostgreSQL)
        (["--username", "x" * 151], "--username"),
        (["--username", "has space"], "--username"),
        (["--username", "\udcff"], "--username"),
        (["--username", "new-admin", "--password", ""], "--password"),
        (["--username", "new-admin", "--password", "\udcff"], "--password"),  # used to fail hashing
        (["--username", "new-admin", "--password", "a\x00b"], "--password"),
    ],
)
def test_load_demo_refuses_bad_logins_writing_nothing(args: list[str], names: str) -> None:
    refused("load_demo", *args, names=names)


# --- random arguments -----------------------------------------------------------------------


@given(target=ARG_TEXT, command=st.sampled_from(["run_chain", "run_workflow"]))
def test_run_commands_refuse_random_targets(world: None, target: str, command: str) -> None:
    if target in ("nightly", "bot"):
        return
    refused(command, target)


@given(params=st.one_of(ARG_TEXT, JSON_TEXT), command=st.sampled_from(["run_chain", "run_workflow"]))
def test_run_commands_take_random_params(world: None, params: str, command: str, monkeypatch: Any) -> None:
    """Any --params: refused naming it, or (a JSON object) handed to the runner as it is."""
    handed: list[dict[str, Any]] = []

    def runner(target: Any, params: dict[str, Any], **kwargs: Any) -> Any:
        handed.append(params)
        raise CommandError("stop here: the run itself is not under test")

    module = "chains.management.commands." + command
    monkeypatch.setattr(f"{module}.{command}", runner)
    target = "nightly" if command == "run_chain" else "bot"
    message = refused(command, target, "--params", params)
    assert handed or "--params" in message, message


@given(value=st.one_of(ARG_TEXT, st.integers().map(str)))
def test_fire_triggers_refuses_random_trigger_ids(world: None, value: str) -> None:
    refused("fire_triggers", "--trigger", value)


def _not_an_age(text: str) -> bool:
    try:
        timezone.now() - parse_age(text)
    except (ValueError, OverflowError):
        return True
    return False


def _not_a_batch_size(text: str) -> bool:
    try:
        return not 0 < int(text) <= 1_000_000  # as argparse reads it: " 5 ", "1_000" are numbers
    except ValueError:
        return True


@given(
    older_than=st.one_of(
        ARG_TEXT.filter(_not_an_age),
        st.builds(lambda n, unit: f"{n}{unit}", st.integers(max_value=0), st.sampled_from("smhdw")),
        st.builds(lambda n, unit: f"{n}{unit}", st.integers(min_value=10**8), st.sampled_from("dw")),
    )
)
def test_purge_logs_refuses_random_ages(world: None, older_than: str) -> None:
    refused("purge_logs", "--older-than", older_than, names="--older-than")


@given(
    value=st.one_of(
        ARG_TEXT.filter(_not_a_batch_size),
        st.integers(max_value=0).map(str),
        st.integers(min_value=10**6 + 1).map(str),
    )
)
def test_purge_logs_refuses_random_batch_sizes(world: None, value: str) -> None:
    refused("purge_logs", "--older-than", "90d", "--batch-size", value, names="--batch-size")


def _not_an_interval(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return True
    return not 0 < value <= 86400


@given(
    value=st.one_of(
        ARG_TEXT.filter(_not_an_interval),
        st.floats().filter(lambda f: not 0 < f <= 86400).map(str),
    )
)
def test_run_scheduler_refuses_random_intervals(value: str) -> None:
    """(Only values it must refuse: an accepted one would loop in the test process.)"""
    refused("run_scheduler", "--interval", value, "--max-ticks", "1", names="--interval")


@given(
    bad=st.dictionaries(
        st.sampled_from(["--start", "--end", "--level", "--component", "--workflow"]),
        ARG_TEXT,
        min_size=1,
        max_size=3,
    )
)
def test_export_logs_takes_random_filters(world: None, out_dir: Path, bad: dict[str, str]) -> None:
    """Refused naming the argument with no file left, or a complete ZIP."""
    import zipfile

    target = out_dir / "logs.zip"
    args = [item for pair in bad.items() for item in pair]
    tally.count()
    try:
        call_command("export_logs", *args, "--output", str(target))
    except CommandError as exc:
        message = str(exc)
        assert any(name.lstrip("-") in message for name in bad), message
        assert not list(out_dir.iterdir())
    else:
        with zipfile.ZipFile(target) as archive:
            assert sorted(archive.namelist()) == ["error_logs.json", "execution_logs.json", "metrics.json"]
        target.unlink()


# --- real processes --------------------------------------------------------------------------

UNDECODABLE = os.fsdecode(b"\xff\xfe")  # what a shell passes for bytes that are not UTF-8
PROCESS_CASES: list[tuple[list[str], str]] = [
    (["run_chain", "ghost"], "chain ghost does not exist"),
    (["run_chain", UNDECODABLE], "does not exist"),  # used to be a UnicodeEncodeError traceback
    (["run_workflow", "ghost", "--params", "{"], "unknown workflow"),
    (["fire_triggers", "--trigger", "abc"], "argument --trigger"),
    (["fire_triggers", "--trigger", "424242"], "trigger 424242 does not exist"),
    (["run_scheduler", "--interval", "inf"], "--interval"),  # used to tick once, then an OverflowError
    (["purge_logs", "--older-than", "9" * 30 + "d"], "--older-than"),  # used to be an OverflowError
    (["purge_logs", "--older-than", "90d", "--batch-size", "9" * 30], "--batch-size"),
    (["export_logs", "--start", "2026-13-45", "--output", "{dir}/logs.zip"], "start"),
    (["export_logs", "--output", "{dir}/missing/logs.zip"], "cannot write"),
    (["export_logs", "--component", UNDECODABLE, "--output", "{dir}/logs.zip"], "--component"),
    (["load_demo", "--username", ""], "--username"),  # used to be a ValueError traceback
    (["load_demo", "--username", "new-admin", "--password", UNDECODABLE], "--password"),
]


@pytest.mark.django_db(transaction=True)
def test_commands_fail_in_one_line_without_traceback_in_real_processes(out_dir: Path) -> None:
    """Exit status non-zero, the reason (naming the argument) on stderr's last line, no
    traceback, nothing written. The processes run side by side to keep the suite fast."""
    cases = [
        ([arg.replace("{dir}", str(out_dir)) for arg in args], expected) for args, expected in PROCESS_CASES
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: manage(*case[0], timeout=60), cases))
    for (args, expected), result in zip(cases, results, strict=True):
        tally.count()
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0, (args, result.stdout)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert lines, (args, "no reason given")
        assert expected in lines[-1], (args, lines[-1])
        if lines[-1].startswith("CommandError"):
            assert len(lines) == 1, (args, result.stderr)  # exactly one line
    assert not list(out_dir.iterdir()), "a refused export left a file"
    assert not Workflow.objects.exists(), "load_demo wrote demo data before refusing the login"
    assert not User.objects.exists()
