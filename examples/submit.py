"""Demo bot: submits the batch and prints a confirmation (also some plain text)."""

from __future__ import annotations

import random

from _bot import log, work

work(["Review batch", "Click submit"], seconds=2)
print("plain text output is stored as an INFO entry")
log("batch submitted", node_id="confirmation", confirmation=f"RPA-{random.randint(10000, 99999)}")
