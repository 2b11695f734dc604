"""The environment every test process and its children share, set before Django reads its settings.

pyproject.toml loads this first (`-p rpa_monitor.pytest_env`): pytest-django configures Django
before any conftest.py runs, and child processes (manage.py, web servers, bots) inherit os.environ.
Tests that need another value set it in the child's environment themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

# With DEBUG off (the default) and no SECRET_KEY, the web application refuses to start and every
# manage.py prints a warning (rpa_monitor/startup.py). One key for this process and every child
# keeps sessions and signatures valid across them.
os.environ.setdefault("SECRET_KEY", "rpa-monitor-test-suite-key-not-for-production-0123456789abcdef")
# WhiteNoise serves STATIC_ROOT and warns at start-up when it does not exist (production has run
# collectstatic); tests serve no static files, an empty directory keeps them quiet.
_static_root = Path(__file__).resolve().parent.parent / "var" / "test-static"
_static_root.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("STATIC_ROOT", str(_static_root))
