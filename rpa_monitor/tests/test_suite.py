"""The test suite's own set-up: the fast test password hasher (test databases only) and a runtime
directory per test process (rpa_monitor/pytest_plugin.py), for this process and its children."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection

from rpa_monitor.test import database_env

SHOW_SETTINGS = (
    "import django, json\n"
    "django.setup()\n"
    "from django.conf import settings\n"
    "from django.contrib.auth.hashers import make_password\n"
    "print(json.dumps({'data_dir': str(settings.DATA_DIR), 'log_dir': str(settings.LOG_DIR),\n"
    "                  'database': str(settings.DATABASES['default']['NAME']),\n"
    "                  'hash': make_password('secret')}))\n"
)


def child_settings(env: dict[str, str]) -> dict[str, str]:
    """What a real process started with `env` reads from the settings."""
    done = subprocess.run(
        [sys.executable, "-c", SHOW_SETTINGS],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.django_db
def test_it_hashes_passwords_fast_here_and_in_the_processes_tests_start() -> None:
    child = child_settings(database_env())
    assert make_password("secret").startswith("md5$")
    assert child["hash"].startswith("md5$")
    assert child["database"] == str(connection.settings_dict["NAME"])


@pytest.mark.parametrize(
    "database",
    [
        {"RPA_SQLITE_PATH": "{tmp}/rpa_monitor.sqlite3"},
        {"DATABASE_URL": "postgres://rpa@127.0.0.1:5432/rpa"},
    ],
)
def test_it_never_hashes_fast_against_a_database_that_is_not_a_test_database(
    tmp_path: Path, database: dict[str, str]
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update({key: value.format(tmp=tmp_path) for key, value in database.items()})
    env.update(DJANGO_SETTINGS_MODULE="rpa_monitor.settings", RPA_TEST_FAST_HASHER="1")
    assert child_settings(env)["hash"].startswith("pbkdf2_sha256$")


@pytest.mark.django_db
def test_it_gives_each_test_process_and_its_children_a_data_dir_of_its_own() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER") or "main"
    assert settings.DATA_DIR.parts[-2:] == ("test", worker)
    child = child_settings(database_env())
    assert (child["data_dir"], child["log_dir"]) == (str(settings.DATA_DIR), str(settings.LOG_DIR))
    if connection.vendor == "sqlite":
        assert Path(connection.settings_dict["NAME"]).parent == settings.DATA_DIR
