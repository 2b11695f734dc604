"""What the entry points check before they start: never serve on the public development key.

settings.py falls back to a fixed `django-insecure-` key when SECRET_KEY is unset, so that a fresh
clone runs. Anyone can read that key in the source and forge sessions, CSRF tokens and password-reset
links signed with it. With DEBUG off:
- the web application (`rpa_monitor.asgi`, `rpa_monitor.wsgi`) refuses to start, raising
  ImproperlyConfigured with a one-line reason naming SECRET_KEY;
- management commands (`manage.py`) warn once on stderr and run: a cron tick or a migration signs
  nothing a browser sees, and `check --deploy` must still be able to say what is wrong.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Django's own mark of a key not meant for production (startproject's keys, our fallback).
INSECURE_PREFIX = "django-insecure-"


def secret_key_problem() -> str | None:
    """Why this deployment must not serve on its SECRET_KEY; None when it may."""
    if settings.DEBUG or not settings.SECRET_KEY.startswith(INSECURE_PREFIX):
        return None
    return (
        "SECRET_KEY is not set (the public development key is in use) and DEBUG is off: set SECRET_KEY "
        "to a long random value, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )


def refuse_development_secret_key() -> None:
    """For the web application: stop here, before anything is served."""
    problem = secret_key_problem()
    if problem:
        raise ImproperlyConfigured(problem)


def warn_about_development_secret_key() -> None:
    """For management commands: one line on stderr, then the command runs."""
    try:
        problem = secret_key_problem()
    except ImproperlyConfigured:
        return  # settings themselves are invalid: the command reports that in its own words
    if problem:
        sys.stderr.write(f"warning: {problem}\n")
