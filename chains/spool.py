"""Where a bot's output lives until it is stored: one pair of files per run.

A bot's stdout and stderr are regular files under `RPA_DATA_DIR/spool`, not
pipes: the bot writes straight to disk, so it keeps writing (and nothing sits
only in a process's memory) when its runner dies. The runner tails the files;
each stored batch moves the run's byte offsets (`WorkflowRun.stdout_offset`,
`stderr_offset`) in the transaction that stores it, so whoever takes over (the
reaper, the spool sweep) continues from exactly there: no line twice, none
skipped. The files are removed once everything in them is stored.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

SUFFIXES = (".out", ".err")


def spool_dir() -> Path:
    # Absolute: the path is stored on the run and opened by other processes (the reaper).
    return Path(settings.DATA_DIR).absolute() / "spool"


@dataclass(frozen=True)
class Spool:
    """The spool files `<base>.out` (stdout) and `<base>.err` (stderr) of one run."""

    base: str

    @classmethod
    def new(cls, run_id: int) -> Spool:
        directory = spool_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Run ids repeat across databases sharing a data directory (tests, staging): a token
        # keeps two runs from ever sharing a file.
        return cls(str(directory / f"run-{run_id}-{secrets.token_hex(6)}"))

    @property
    def paths(self) -> tuple[str, str]:
        return self.base + SUFFIXES[0], self.base + SUFFIXES[1]

    def create(self) -> tuple[int, int]:
        """Create both files (only this user may read them); the (stdout, stderr) fds the bot gets."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fds: list[int] = []
        try:
            for path in self.paths:
                fds.append(os.open(path, flags, 0o600))
        except OSError:
            for fd, path in zip(fds, self.paths, strict=False):
                os.close(fd)
                Path(path).unlink(missing_ok=True)
            raise
        return fds[0], fds[1]

    def remove(self) -> None:
        for path in self.paths:
            Path(path).unlink(missing_ok=True)
