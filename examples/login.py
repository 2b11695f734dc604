"""Demo bot: logs into a (pretend) web portal."""

from __future__ import annotations

import os

from _bot import log, work

log("opening portal", node_id="browser", url="https://portal.example.invalid")
work(["Navigate to login page", "Fill username", "Fill password", "Click sign-in"], seconds=2)
log("logged in", node_id="session", user=os.environ.get("PORTAL_USER", "demo"))
