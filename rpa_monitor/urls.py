from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from rpa_monitor import dashboard, health, metrics

admin.site.site_header = "RPA Monitor"
admin.site.site_title = "RPA Monitor"
admin.site.index_title = "Workflows, chains, runs and logs"

urlpatterns = [
    # Before admin.site.urls, whose catch-all would otherwise answer these paths.
    path("admin/dashboard/", admin.site.admin_view(dashboard.dashboard_view), name="rpa_dashboard"),
    path(
        "admin/dashboard/data.json",
        admin.site.admin_view(dashboard.dashboard_data_view),
        name="rpa_dashboard_data",
    ),
    path("admin/", admin.site.urls),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("health", health.health_view, name="health"),
    path("api/", include("api.urls")),
]
