"""The WSGI application, for WSGI servers (and `manage.py runserver`); deployments serve
rpa_monitor.asgi. With DEBUG off it refuses to start on the public development key."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from rpa_monitor.startup import refuse_development_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpa_monitor.settings")

refuse_development_secret_key()
application = get_wsgi_application()
