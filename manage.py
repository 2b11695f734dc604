#!/usr/bin/env python
"""Django's command-line utility for RPA Monitor."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpa_monitor.settings")
    from django.core.management import execute_from_command_line

    from rpa_monitor.startup import warn_about_development_secret_key

    warn_about_development_secret_key()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
