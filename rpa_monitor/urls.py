from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "RPA Monitor"
admin.site.site_title = "RPA Monitor"
admin.site.index_title = "Workflows, chains, runs and logs"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),
]
