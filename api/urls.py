"""/api/…: the NinjaAPI's URLs, each wrapped so even a 404 or 405 answers JSON."""

from __future__ import annotations

from django.urls import URLPattern, re_path

from api.errors import json_errors, not_found
from api.views import api

app_name = "api"

patterns, _, _ = api.urls
urlpatterns = [
    *(
        URLPattern(p.pattern, json_errors(p.callback), p.default_args, p.name)
        for p in patterns
        if isinstance(p, URLPattern)
    ),
    re_path(r"", not_found),  # anything else under /api/
]
