"""The demo data: valid, complete and safe to load again."""

from __future__ import annotations

import pytest

from alerts.models import AlertRule, NotificationChannel
from chains.models import Chain, Workflow
from rpa_monitor.demo import DEMO_RULES, load_demo
from triggers.models import Trigger

pytestmark = pytest.mark.django_db


def test_it_loads_workflows_a_chain_triggers_alert_rules_and_a_login_once() -> None:
    created = load_demo("admin", "pw")
    assert Chain.objects.get(slug="demo").sequence == "login → data_entry → submit"
    assert Workflow.objects.count() == 5
    assert Trigger.objects.count() == 4
    assert AlertRule.objects.count() == len(DEMO_RULES)
    assert NotificationChannel.objects.get().kind == "email"
    assert AlertRule.objects.get(kind="chain_failed").chain == Chain.objects.get(slug="demo")
    assert any(line.startswith("alert rule") for line in created)
    for rule in AlertRule.objects.all():
        rule.full_clean()
        assert list(rule.channels.all()) == [NotificationChannel.objects.get()]
    assert load_demo("admin", "pw") == []
