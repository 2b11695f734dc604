from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from rpa_monitor.demo import load_demo


class Command(BaseCommand):
    help = "Register the demo bots under examples/, the demo chain and an admin login (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("RPA_DEMO_USER", "admin"))
        parser.add_argument("--password", default=os.environ.get("RPA_DEMO_PASSWORD", "rpa-demo"))

    def handle(self, *args: Any, username: str, password: str, **options: Any) -> str:
        created = load_demo(username, password)
        summary = ", ".join(created) if created else "already present"
        return f"demo data ready ({summary}); admin login: {username}"
