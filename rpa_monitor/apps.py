from __future__ import annotations

from django.apps import AppConfig


class RpaMonitorConfig(AppConfig):
    name = "rpa_monitor"
    verbose_name = "RPA Monitor"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from rpa_monitor.metrics import DatabaseCollector, multiprocess_mode

        if not multiprocess_mode() and not any(
            isinstance(c, DatabaseCollector) for c in list(REGISTRY._collector_to_names)
        ):
            REGISTRY.register(DatabaseCollector())
