"""Stored delivery errors lose the response bodies they quoted ("HTTP 403: <body>").

From now on a failed answer is recorded by its code and standard phrase only (alerts.egress);
errors stored before still held the start of the body (an internal service's error page) or a
redirect's Location. They are rewritten to the new form, e.g. "HTTP 403 Forbidden".
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from django.db import migrations

QUOTED = re.compile(r"^HTTP (\d{3}):")
BATCH = 1000


def status_text(code: int) -> str:
    try:
        text = f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        text = f"HTTP {code}"
    return f"{text} (redirects are not followed)" if 300 <= code < 400 else text


def drop_bodies(apps: Any, schema_editor: Any) -> None:
    Delivery = apps.get_model("alerts", "Delivery")
    # Read first, then write: SQLite must not update rows under an open cursor over them.
    quoted = [
        Delivery(pk=pk, error=status_text(int(found.group(1))))
        for pk, error in Delivery.objects.filter(error__startswith="HTTP ").values_list("pk", "error")
        if (found := QUOTED.match(error))
    ]
    Delivery.objects.bulk_update(quoted, ["error"], batch_size=BATCH)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(drop_bodies, migrations.RunPython.noop, elidable=True)]
