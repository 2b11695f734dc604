"""Scraping /metrics in tests: the real view through Django's test Client, parsed by prometheus_client."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from django.test import Client
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

# DESIGN §7 (and the two operational gauges the alerts use): family → (type, label names).
FAMILIES: dict[str, tuple[str, frozenset[str]]] = {
    "workflow_executions": ("counter", frozenset({"workflow_id", "status"})),
    "workflow_duration_seconds": ("histogram", frozenset({"workflow_id"})),
    "log_entries": ("counter", frozenset({"level", "component"})),
    "chain_executions": ("counter", frozenset({"chain_id", "status"})),
    "trigger_fires": ("counter", frozenset({"trigger_type", "workflow_id"})),
    "active_workflows": ("gauge", frozenset()),
    "error_rate": ("gauge", frozenset()),
    "rpa_scheduler_last_tick_timestamp_seconds": ("gauge", frozenset()),
    "rpa_stale_runs": ("gauge", frozenset()),
    "rpa_open_alerts": ("gauge", frozenset({"severity"})),
}

Labels = frozenset[tuple[str, str]]


def sample_names(family: str, kind: str) -> set[str]:
    """The names a family's samples (and its HELP/TYPE lines) may carry in the text format."""
    if kind == "counter":
        return {family, f"{family}_total"}
    if kind == "histogram":
        return {family, f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    return {family}


OUR_NAMES = {name for family, (kind, _) in FAMILIES.items() for name in sample_names(family, kind)}
# Label names each of our exposed sample names carries (buckets add `le`).
SAMPLE_LABELS: dict[str, frozenset[str]] = {}
for _family, (_kind, _labels) in FAMILIES.items():
    for _name in sample_names(_family, _kind):
        SAMPLE_LABELS[_name] = _labels | {"le"} if _name.endswith("_bucket") else _labels


@dataclass
class Scrape:
    body: str
    families: dict[str, Metric] = field(default_factory=dict)

    def series(self, sample: str) -> dict[Labels, float]:
        """{labels: value} of every sample named `sample`."""
        family = self.families.get(_family_of(sample))
        if family is None:
            return {}
        return {frozenset(s.labels.items()): s.value for s in family.samples if s.name == sample}

    def value(self, sample: str, **labels: str) -> float:
        """One sample's value; 0 when the series does not exist (yet)."""
        return self.series(sample).get(frozenset(labels.items()), 0.0)


def _family_of(sample: str) -> str:
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if sample.endswith(suffix) and sample.removesuffix(suffix) in FAMILIES:
            return sample.removesuffix(suffix)
    return sample


def scrape(client: Client | None = None, **headers: str) -> Scrape:
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def parse(body: str) -> Scrape:
    families = {family.name: family for family in text_string_to_metric_families(body)}
    return Scrape(body, families)


def delta(before: Scrape, after: Scrape, sample: str) -> dict[Labels, float]:
    """The series of `sample` whose value changed between two scrapes, and by how much."""
    old, new = before.series(sample), after.series(sample)
    changes = {labels: new.get(labels, 0.0) - old.get(labels, 0.0) for labels in old.keys() | new.keys()}
    return {labels: change for labels, change in changes.items() if change}


def labels(**values: str) -> Labels:
    return frozenset(values.items())


def counted(expected: Mapping[Labels, int]) -> dict[Labels, float]:
    return {key: float(n) for key, n in expected.items() if n}


_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def our_text(body: str) -> str:
    """Only the lines of our families (HELP, TYPE and samples) from a /metrics body."""
    kept = []
    # Split on "\n" only: a label value may hold a raw "\r" or U+2028 (the format escapes only "\n").
    for line in body.split("\n"):
        if line.startswith(("# HELP ", "# TYPE ")):
            name = line.split(" ", 3)[2]
        else:
            match = _NAME_RE.match(line)
            name = match.group(0) if match else ""
        if name in OUR_NAMES:
            kept.append(line + "\n")
    return "".join(kept)


def promtool() -> str:
    """The promtool binary, or skip the test (.ci/run installs Debian's `prometheus` for it)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does it as root)")
    return path


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
