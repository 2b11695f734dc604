from __future__ import annotations

from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "logs"
    verbose_name = "Logs"
    default_auto_field = "django.db.models.BigAutoField"
