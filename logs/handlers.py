"""A logging.Handler that stores records as LogEntry rows, in batches.

Records are buffered and written with one bulk insert when the buffer holds
`batch_size` records, when `flush_interval` seconds have passed since the last
write (checked on every emit and by a background flusher), at interpreter exit
(logging.shutdown flushes every handler), and at once for ERROR and above, so
the line explaining a crash is stored before the crash.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from django.db import InterfaceError, OperationalError

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
}
_FIELD_ATTRS = frozenset({"component", "workflow_id", "node_id", "run_id", "metadata"})
_MAX_BUFFER = 100_000


class DatabaseHandler(logging.Handler):
    def __init__(
        self,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        background: bool = True,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.background = background
        self._buffer: list[Any] = []
        self._buffer_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._writing = threading.local()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # The database layer's own logs would recurse into this handler.
        if record.name.startswith("django.db") or getattr(self._writing, "active", False):
            return
        try:
            row = record_to_row(record)
        except Exception:
            self.handleError(record)
            return
        with self._buffer_lock:
            self._buffer.append(row)
            pending = len(self._buffer)
        due = time.monotonic() - self._last_flush >= self.flush_interval
        if record.levelno >= logging.ERROR or pending >= self.batch_size or due:
            self.flush()
        elif self.background:
            self._start_flusher()

    def flush(self) -> None:
        with self._buffer_lock:
            rows, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        if not rows:
            return
        from logs.models import LogEntry

        self._writing.active = True
        try:
            LogEntry.objects.ingest(rows)
        except (OperationalError, InterfaceError) as exc:
            self._requeue(rows, exc)  # the database is away or locked: try again later
        except Exception as exc:
            # Not the database being away but something in the rows: retrying
            # would fail forever and block every later record, so drop them.
            print(
                f"rpa-monitor: dropped {len(rows)} log records that cannot be stored: {exc!r}",
                file=sys.stderr,
            )
        finally:
            self._writing.active = False

    def close(self) -> None:
        self._stop.set()
        try:
            self.flush()
        finally:
            super().close()

    def _requeue(self, rows: list[Any], exc: Exception) -> None:
        # The database may be briefly unavailable; keep the rows for the next
        # flush unless that would grow without bound. The file handler still has them.
        with self._buffer_lock:
            if len(self._buffer) + len(rows) <= _MAX_BUFFER:
                self._buffer[:0] = rows
                kept = "kept for retry"
            else:
                kept = "dropped"
        print(f"rpa-monitor: storing {len(rows)} log records failed ({exc}); {kept}", file=sys.stderr)

    def _start_flusher(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        self._flusher = threading.Thread(target=self._flush_periodically, name="log-flusher", daemon=True)
        self._flusher.start()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self.flush_interval):
            if self._buffer and time.monotonic() - self._last_flush >= self.flush_interval:
                self.flush()


def record_to_row(record: logging.LogRecord) -> Any:
    from logs.models import LogRow, level_for_number

    metadata = dict(getattr(record, "metadata", None) or {})
    for key, value in record.__dict__.items():
        if key not in _STANDARD_ATTRS and key not in _FIELD_ATTRS:
            metadata[key] = value
    message = record.getMessage()
    if record.exc_info:
        metadata["exception"] = "".join(traceback.format_exception(*record.exc_info))
    component = getattr(record, "component", None) or record.name.removeprefix("rpa.")
    return LogRow(
        timestamp=datetime.fromtimestamp(record.created, tz=UTC),
        level=level_for_number(record.levelno),
        component=str(component),
        message=message,
        workflow_id=str(getattr(record, "workflow_id", None) or ""),
        node_id=str(getattr(record, "node_id", None) or ""),
        run_id=getattr(record, "run_id", None),
        metadata=metadata,
    )
