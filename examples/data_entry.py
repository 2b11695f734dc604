"""Demo bot: types records into a form; fails sometimes, like real RPA does.

RPA_DEMO_FAIL_RATE (0..1, default 0.3) is the chance that a record is rejected.
"""

from __future__ import annotations

import os
import random

from _bot import fail, log, progress, work

records = int(os.environ.get("RPA_DEMO_RECORDS", "5"))
fail_rate = float(os.environ.get("RPA_DEMO_FAIL_RATE", "0.3"))
work(["Open data entry form", "Load input spreadsheet"], seconds=1)
for number in range(1, records + 1):
    log(f"entering record {number}/{records}", node_id="form", record=number)
    progress(number, records)
    if random.random() < fail_rate / records:
        fail(f"record {number}: field 'amount' rejected by the form (element not found)")
work(["Save draft"], seconds=1)
log(f"entered {records} records", node_id="form", records=records)
