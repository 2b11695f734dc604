from __future__ import annotations

from django.apps import AppConfig


class RpaMonitorConfig(AppConfig):
    name = "rpa_monitor"
    verbose_name = "RPA Monitor"
