from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections

from logs import get_logger
from triggers.scheduler import tick

log = get_logger("scheduler")
MAX_INTERVAL = 86400


class Command(BaseCommand):
    help = "Run scheduler ticks every --interval seconds until SIGTERM/SIGINT (for hosts without cron)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between ticks (default 5)")
        parser.add_argument("--max-ticks", type=int, default=None, help="stop after this many ticks")

    def handle(self, *args: Any, interval: float, max_ticks: int | None, **options: Any) -> str:
        # NaN passed `<= 0` and ticked without pause; inf overflowed the wait after the first tick.
        if not 0 < interval <= MAX_INTERVAL:
            raise CommandError(
                f"--interval must be a number of seconds > 0 and <= {MAX_INTERVAL}, got {interval}"
            )
        if max_ticks is not None and max_ticks < 1:
            raise CommandError(f"--max-ticks must be >= 1, got {max_ticks}")
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        ticks = 0
        self.stdout.write(f"scheduler: ticking every {interval:g}s (SIGTERM or Ctrl-C stops)")
        while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
            started = time.monotonic()
            close_old_connections()  # a server restart or a timed-out connection must not end the loop
            try:
                report = tick()
                if report.fires or report.reaped:
                    self.stdout.write(report.summary())
            except Exception as exc:
                log.exception(f"scheduler tick failed: {exc}")
            ticks += 1
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        return f"scheduler stopped after {ticks} tick(s)"
