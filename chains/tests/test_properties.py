"""Correctness properties 1-3 (DESIGN §13): chain listing, unknown workflows, stop at the first failure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import transaction
from hypothesis import example, given
from hypothesis import strategies as st

from chains.models import Chain, ChainStep, RunStatus, Workflow, WorkflowRun
from chains.runner import run_chain
from rpa_monitor.errors import WorkflowNotFoundError

pytestmark = pytest.mark.django_db

POOL = ["login", "data-entry", "submit", "report"]

SLUGS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,24}", fullmatch=True)
# Anything a client might send as a workflow slug. No NUL and no lone surrogates here:
# those have their own tests in test_chains.py (they are bugs today).
TEXT_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
ANY_TEXT = st.text(TEXT_CHARS, max_size=20)
CHAIN_NAMES = st.text(TEXT_CHARS, min_size=1, max_size=40)


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each hypothesis example starts from the test's empty tables and leaves nothing behind."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def make_workflows(slugs: list[str], **fields: object) -> None:
    for slug in slugs:
        Workflow.objects.create(slug=slug, name=slug, command=["true"], **fields)


chain_specs = st.lists(
    st.tuples(SLUGS, CHAIN_NAMES, st.lists(st.sampled_from(POOL), min_size=1, max_size=6)),
    max_size=6,
    unique_by=lambda spec: spec[0],
)


@given(specs=chain_specs)
def test_it_lists_every_created_chain_exactly_once_with_its_steps_in_order(
    specs: list[tuple[str, str, list[str]]],
) -> None:
    with rolled_back():
        make_workflows(POOL)
        for slug, name, steps in specs:
            Chain.objects.create_with_steps(slug, name, steps)

        listed = list(Chain.objects.all())
        assert Counter(chain.slug for chain in listed) == Counter(slug for slug, _, _ in specs)
        by_slug = {chain.slug: chain for chain in listed}
        for slug, name, steps in specs:
            chain = by_slug[slug]
            assert chain.name == name
            ordered = chain.ordered_steps()
            assert [step.workflow.slug for step in ordered] == steps
            assert [step.position for step in ordered] == list(range(1, len(steps) + 1))
        # The admin and API list with prefetched steps; same answer.
        prefetched = Chain.objects.prefetch_related("steps__workflow")
        assert {c.slug: c.sequence for c in prefetched} == {s: " → ".join(w) for s, _, w in specs}


requested_slugs = (
    st.tuples(
        st.lists(st.sampled_from(POOL), max_size=5),
        st.lists(st.one_of(SLUGS, ANY_TEXT).filter(lambda slug: slug not in POOL), max_size=3),
    )
    .flatmap(lambda parts: st.permutations(parts[0] + parts[1]))
    .filter(bool)
)


@given(requested=requested_slugs)
@example(requested=["login", "submit"])
@example(requested=["login", "nope", "nope", "LOGIN", "login "])
def test_it_refuses_chains_naming_unknown_workflows(requested: list[str]) -> None:
    unknown = {slug for slug in requested if slug not in POOL}
    with rolled_back():
        make_workflows(POOL)
        if not unknown:
            chain = Chain.objects.create_with_steps("new-chain", "new chain", requested)
            assert [step.workflow.slug for step in chain.ordered_steps()] == requested
            return
        with pytest.raises(WorkflowNotFoundError) as excinfo:
            Chain.objects.create_with_steps("new-chain", "new chain", requested)
        error = excinfo.value
        assert error.slugs == sorted(unknown)
        assert error.field == "workflows"
        for slug in unknown:
            assert slug in error.message
        assert not Chain.objects.exists()
        assert not ChainStep.objects.exists()


@given(outcomes=st.lists(st.booleans(), min_size=1, max_size=6))
def test_it_stops_a_chain_at_its_first_failing_step(outcomes: list[bool]) -> None:
    with rolled_back():
        slugs = [f"step-{position}" for position in range(1, len(outcomes) + 1)]
        for slug, ok in zip(slugs, outcomes, strict=True):
            Workflow.objects.create(slug=slug, name=slug, command=["true" if ok else "false"])
        chain = Chain.objects.create_with_steps("outcomes", "outcomes", slugs)

        chain_run = run_chain(chain)

        failed_step = outcomes.index(False) + 1 if False in outcomes else None
        ran = failed_step or len(outcomes)
        runs = list(WorkflowRun.objects.filter(chain_run=chain_run).order_by("position"))
        assert [(run.position, run.workflow.slug) for run in runs] == list(
            zip(range(1, ran + 1), slugs[:ran], strict=True)
        )
        last_status = RunStatus.SUCCESS if failed_step is None else RunStatus.FAILURE
        assert [run.status for run in runs] == [RunStatus.SUCCESS] * (ran - 1) + [last_status]
        assert not WorkflowRun.objects.filter(workflow__slug__in=slugs[ran:]).exists()
        chain_run.refresh_from_db()
        assert chain_run.status == last_status
        assert chain_run.failed_step == failed_step
        assert chain_run.finished_at is not None
