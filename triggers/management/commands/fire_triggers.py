from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rpa_monitor.errors import TriggerNotFoundError
from triggers.models import Trigger
from triggers.scheduler import fire_now, tick


class Command(BaseCommand):
    # Commands run as the operator of this host (whoever may run manage.py and read its
    # settings, hence the database), not as a Django user: there is no user whose
    # chains.execute permission could be checked, and the fire records no requester.
    help = (
        "Run one scheduler tick (what cron runs every minute), or fire one trigger now with --trigger. "
        "Runs as the host's operator: no Django permission is checked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--trigger", type=int, metavar="ID", help="fire this trigger now (any type)")

    def handle(self, *args: Any, trigger: int | None, **options: Any) -> str:
        if trigger is not None:
            return self._fire_one(trigger)
        report = tick()
        for fire in report.fires:
            self.stdout.write(_describe(fire))
        return report.summary()

    def _fire_one(self, trigger_id: int) -> str:
        try:
            trigger = Trigger.objects.select_related("workflow", "chain").get(pk=trigger_id)
        except Trigger.DoesNotExist:
            raise CommandError(TriggerNotFoundError(trigger_id).message) from None
        if not trigger.enabled:
            raise CommandError(f"trigger {trigger_id} ({trigger.name}) is disabled; enable it first")
        fire = fire_now(trigger, detail="fired from the command line")
        if fire.outcome == fire.Outcome.ERROR:
            raise CommandError(_describe(fire))
        return _describe(fire)


def _describe(fire: Any) -> str:
    run = fire.run
    what = f"{type(run).__name__} {run.pk}" if run is not None else fire.detail
    return (
        f"trigger {fire.trigger_id} ({fire.trigger.name}) → {fire.trigger.target_slug}: {fire.outcome} {what}"
    )
