"""Queue alert notifications: one pending Delivery per enabled channel of the rule.

The scheduler tick sends them (`alerts.channels.deliver_pending`); queuing in the
transaction that opens or resolves the alert means a notification is never lost
and never sent for an alert that was rolled back.
"""

from __future__ import annotations

from datetime import datetime

from alerts.models import Alert, AlertRule, Delivery


def queue_notifications(alert: Alert, event: str, now: datetime) -> list[Delivery]:
    """Pending deliveries of `event` for the alert through each enabled channel of its rule.

    In the rule's quiet hours, info and warning notifications wait until they end;
    critical ones go out at once.
    """
    rule = alert.rule
    due = now
    if alert.severity != AlertRule.Severity.CRITICAL:
        due = rule.quiet_until(now) or now
    deliveries = [
        Delivery(alert=alert, channel=channel, event=event, created_at=now, next_attempt_at=due)
        for channel in rule.channels.filter(enabled=True)
    ]
    return Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
