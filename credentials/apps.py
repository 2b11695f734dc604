from __future__ import annotations

from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "Secrets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from credentials import checks  # noqa: F401  (registers the RPA_SECRET_KEYS check)
