"""What one admin POST or command may make the server hold or write (issue 11 defects 7 and 8).

Chains of at most RPA_MAX_CHAIN_STEPS steps (a form claiming 100,000 rows builds no more
forms than that), bodies of at most DATA_UPLOAD_MAX_MEMORY_SIZE (a 413 page), finite numbers
and params of at most RPA_MAX_PARAMS_BYTES in the trigger form and `--params`: refused with
an error naming the field and the limit, nothing written, never a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import models
from django.test import Client, RequestFactory
from django.urls import reverse

from chains.models import Chain, ChainRun, ChainStep, Workflow, WorkflowRun
from rpa_monitor.tests.badinput import Tally, form_errors, superuser_client, table_state
from triggers.models import Trigger

pytestmark = pytest.mark.django_db

tally = Tally("limits")
_summary = tally.fixture()

TABLES: list[type[models.Model]] = [Chain, ChainStep, ChainRun, WorkflowRun, Trigger, AdminLogEntry]
LIMIT = 200  # RPA_MAX_CHAIN_STEPS' default


@pytest.fixture
def client() -> Client:
    return superuser_client()


@pytest.fixture
def bot() -> Workflow:
    return Workflow.objects.create(slug="bot", name="bot", command=["true"])


def chain_form(bot: Workflow, rows: int, total_forms: int | None = None) -> dict[str, str]:
    data = {
        "slug": "long",
        "name": "Long",
        "enabled": "on",
        "steps-TOTAL_FORMS": str(rows if total_forms is None else total_forms),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for i in range(rows):
        data[f"steps-{i}-position"] = str(i + 1)
        data[f"steps-{i}-workflow"] = str(bot.pk)
    return data


def steps_formset(response: Any) -> Any:
    return next(f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "steps")


# -- defect 7: chain steps in the admin ---------------------------------------------------


def test_it_refuses_a_chain_of_more_than_max_steps_in_the_admin(client: Client, bot: Workflow) -> None:
    before = table_state(*TABLES)
    response = tally.response(client.post(reverse("admin:chains_chain_add"), chain_form(bot, LIMIT + 1)))
    assert response.status_code == 200
    errors = " ".join(form_errors(response)["steps"])
    assert f"at most {LIMIT} steps" in errors
    assert "RPA_MAX_CHAIN_STEPS" in errors
    assert table_state(*TABLES) == before


def test_it_saves_a_chain_of_exactly_max_steps_in_the_admin(client: Client, bot: Workflow) -> None:
    response = tally.response(client.post(reverse("admin:chains_chain_add"), chain_form(bot, LIMIT)))
    assert response.status_code == 302
    assert ChainStep.objects.filter(chain__slug="long").count() == LIMIT


def test_it_refuses_a_form_claiming_100000_rows_building_at_most_max_forms(
    client: Client, bot: Workflow
) -> None:
    before = table_state(*TABLES)
    data = chain_form(bot, 1, total_forms=100_000)
    response = tally.response(client.post(reverse("admin:chains_chain_add"), data))
    assert response.status_code == 200
    assert len(steps_formset(response).forms) <= LIMIT
    assert "RPA_MAX_CHAIN_STEPS" in " ".join(form_errors(response)["steps"])
    assert table_state(*TABLES) == before


def test_it_shows_at_most_max_rows_of_a_chain_saved_over_the_limit_and_refuses_to_save_it(
    client: Client, bot: Workflow
) -> None:
    # Written around the model (as chains were before the limit existed).
    chain = Chain.objects.create(slug="legacy", name="Legacy")
    ChainStep.objects.bulk_create(ChainStep(chain=chain, position=i, workflow=bot) for i in range(1, 251))
    page = tally.response(client.get(reverse("admin:chains_chain_change", args=[chain.pk])))
    formset = steps_formset(page)
    assert len(formset.forms) == LIMIT
    data = {"slug": "legacy", "name": "Legacy", "enabled": "on"}
    data |= {f"steps-{k}": str(v) for k, v in formset.management_form.initial.items()}
    for i, form in enumerate(formset.forms):
        data |= {f"steps-{i}-id": str(form.instance.pk), f"steps-{i}-chain": str(chain.pk)}
        data |= {f"steps-{i}-position": str(form.instance.position), f"steps-{i}-workflow": str(bot.pk)}
    response = tally.response(client.post(reverse("admin:chains_chain_change", args=[chain.pk]), data))
    assert response.status_code == 200
    assert "250 given" in " ".join(form_errors(response)["steps"])
    assert chain.steps.count() == 250


def test_every_admin_inline_builds_a_bounded_number_of_forms(client: Client) -> None:
    request = RequestFactory().post("/")
    request.user = User.objects.get(username="root")
    for model_admin in admin.site._registry.values():
        for inline in model_admin.get_inline_instances(request):
            formset = inline.get_formset(request)
            assert formset.absolute_max <= max(settings.RPA_MAX_CHAIN_STEPS, 1000), inline


# -- defect 8: body size in the admin -------------------------------------------------------


@pytest.mark.parametrize("name", ["admin:chains_chain_add", "admin:triggers_trigger_add"])
def test_it_answers_an_admin_body_over_the_limit_with_a_413_page(client: Client, name: str) -> None:
    before = table_state(*TABLES)
    response = tally.response(client.post(reverse(name), {"name": "x" * 3_000_000}))
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.content.decode()
    assert table_state(*TABLES) == before


# -- defect 8: params and configs in the trigger form ------------------------------------------


def trigger_form(bot: Workflow, **overrides: str) -> dict[str, str]:
    base = {
        "name": "t",
        "trigger_type": "manual",
        "workflow": str(bot.pk),
        "chain": "",
        "config": "{}",
        "params": "{}",
        "enabled": "on",
        "overlap": "skip",
    }
    return base | overrides


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("field", ["params", "config"])
def test_trigger_form_refuses_non_finite_numbers_naming_the_field(
    client: Client, bot: Workflow, number: str, field: str
) -> None:
    before = table_state(*TABLES)
    data = trigger_form(bot, **{field: f'{{"a": {{"b": [{number}]}}}}'})
    response = tally.response(client.post(reverse("admin:triggers_trigger_add"), data))
    assert "not a JSON number" in " ".join(form_errors(response)[field])
    assert table_state(*TABLES) == before


def test_trigger_form_refuses_params_over_the_limit_naming_it(client: Client, bot: Workflow) -> None:
    before = table_state(*TABLES)
    data = trigger_form(bot, params=json.dumps({"x": "a" * 70_000}))
    response = tally.response(client.post(reverse("admin:triggers_trigger_add"), data))
    assert "RPA_MAX_PARAMS_BYTES" in " ".join(form_errors(response)["params"])
    assert table_state(*TABLES) == before


def test_trigger_form_refuses_params_nested_too_deeply(client: Client, bot: Workflow) -> None:
    data = trigger_form(bot, params='{"x": ' + "[" * 900 + "]" * 900 + "}")
    response = tally.response(client.post(reverse("admin:triggers_trigger_add"), data))
    assert "nested deeper than 100 levels" in " ".join(form_errors(response)["params"])


# -- defect 8: --params of the run commands --------------------------------------------------


@pytest.mark.parametrize("command", ["run_workflow", "run_chain"])
@pytest.mark.parametrize(
    ("params", "names"),
    [
        (json.dumps({"x": "a" * 70_000}), "RPA_MAX_PARAMS_BYTES"),
        ('{"x": ' + "[" * 900 + "]" * 900 + "}", "nested deeper"),
    ],
)
def test_run_commands_refuse_params_that_cannot_reach_the_bot(
    bot: Workflow, command: str, params: str, names: str
) -> None:
    Chain.objects.create_with_steps("bot", "Bot", ["bot"])
    before = table_state(*TABLES)
    tally.count()
    with pytest.raises(CommandError, match=names):
        call_command(command, "bot", "--params", params)
    assert table_state(*TABLES) == before
