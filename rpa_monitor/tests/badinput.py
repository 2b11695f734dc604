"""Shared pieces of the bad-input corpus (issue 6 part 7, DESIGN §10): garbage strategies,
a tally of inputs tried and server errors seen, and checks that nothing was half-written.

Every test_bad_input_* module keeps a `Tally`; its fixture prints one line
(`bad input <module>: N tried, 0 server errors`) when the session ends, with capture disabled.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import models, transaction
from django.test import Client
from hypothesis import strategies as st

# --- strategies ----------------------------------------------------------------------------

# Anything an HTTP client can send in a form (the test client cannot encode lone surrogates:
# they are tried at the model layer and as JSON escapes instead).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
SURROGATE_TEXT = st.builds(
    lambda a, s, b: a + s + b, TEXT, st.sampled_from(["\ud800", "\udfff", "\udcff"]), TEXT
)
HAND_PICKED = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\n\r",
    "-1",
    "0",
    "-0",
    "1",
    "1.5",
    "1e309",
    "-1e309",
    "NaN",
    "Infinity",
    "9" * 40,
    "-" + "9" * 40,
    "0x10",
    "1_000",
    " 5 ",
    "\uff11\uff12\uff13",  # fullwidth digits: int() accepts them
    "\u0663",  # an Arabic-Indic digit
    "true",
    "null",
    "{",
    "[]",
    "{}",
    '"text"',
    '{"a": 1}',
    '[["nested"]]',
    '{"A": "\\u0000"}',
    '{"A": "\\ud800"}',
    '{"\\ud800": "x"}',
    '["\\u0000"]',
    "<script>alert(1)</script>",
    "'; DROP TABLE chains_workflow; --",
    "../../../../etc/passwd",
    "/",
    "%00",
    "%s%s%n",
    "\u202eevil",
    "\ufeff",
    "ü" * 300,
    "x" * 5_000,
    "2026-13-45",
    "25:61",
    "* * * * * *",
]
# The values most likely to break a field, tried in every field of every form one at a time
# (the whole HAND_PICKED list goes into all fields of a form at once).
SHARPEST = ["\x00", "9" * 40, '{"A": "\\ud800"}', "x" * 5_000]
HUGE = st.sampled_from(["x" * 100_000, "9" * 10_000, "\x00" * 1_000, "ü" * 50_000, "[" * 10_000])
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=10,
)
JSON_TEXT = JSON_VALUES.map(json.dumps)  # NaN / Infinity included: json.dumps writes them
GARBAGE = st.one_of(
    TEXT,
    st.sampled_from(HAND_PICKED),
    st.integers().map(str),
    st.floats().map(str),
    JSON_TEXT,
    HUGE,
)

# --- a superuser admin client that reports 500s instead of raising ------------------------------


def superuser_client(username: str = "root") -> Client:
    """A logged-in superuser whose client returns 500 responses (with exc_info) instead of raising."""
    user = User.objects.create_superuser(username, f"{username}@example.com", None)  # no slow hashing
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


# --- counting --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Bad inputs tried and server errors seen by one module."""

    name: str
    tried: int = 0
    server_errors: int = 0

    def response(self, response: Any, what: object = "") -> Any:
        """Count one HTTP attempt; fail (showing the server's traceback) on a 5xx."""
        self.tried += 1
        if response.status_code >= 500:
            self.server_errors += 1
            exc_info = getattr(response, "exc_info", None)
            detail = "".join(traceback.format_exception(*exc_info)) if exc_info else ""
            raise AssertionError(f"{response.status_code} for {repr(what)[:2000]}\n{detail}")
        return response

    def count(self, n: int = 1) -> None:
        self.tried += n

    def server_error(self) -> None:
        """Count a traceback where a refusal was due (the commands' and models' 500)."""
        self.server_errors += 1

    def fixture(self) -> Any:
        """An autouse fixture printing the module's one-line summary when the session ends."""

        # Session scope: pytest-django runs transactional tests last, so a module's tests
        # need not be contiguous; every module's line is printed once, at the very end.
        @pytest.fixture(autouse=True, scope="session")
        def _bad_input_summary(request: pytest.FixtureRequest) -> Iterator[None]:
            yield
            line = f"bad input {self.name}: {self.tried} tried, {self.server_errors} server errors"
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print(f"\n{line}")

        return _bad_input_summary


# --- state checks ----------------------------------------------------------------------------


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each hypothesis example starts from the test's rows and leaves nothing behind."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def table_state(*model_classes: type[models.Model]) -> dict[str, list[dict[str, Any]]]:
    """Every stored row of each model, every field: compared before/after a refused input."""
    return {
        m._meta.label: list(m._default_manager.order_by("pk").values())  # type: ignore[attr-defined]
        for m in model_classes
    }


def form_errors(response: Any) -> dict[str, list[str]]:
    """{field: messages} of a re-rendered admin change form, its inlines' errors prefixed `inline.`."""
    context = response.context
    assert context is not None, "a 200 without a template"
    assert "adminform" in context, "a 200 that is not the change form"
    errors: dict[str, list[str]] = {k: list(v) for k, v in context["adminform"].form.errors.items()}
    for inline in context.get("inline_admin_formsets", []):
        formset = inline.formset
        for form in formset.forms:
            for field, messages in form.errors.items():
                errors.setdefault(f"{formset.prefix}.{field}", []).extend(messages)
        if formset.non_form_errors():
            errors.setdefault(formset.prefix, []).extend(formset.non_form_errors())
    return errors


def assert_names_a_field(errors: dict[str, list[str]], fields: list[str]) -> None:
    """Refused: at least one error, each shown at a field (an inline row's own errors
    included) or naming one in its text."""
    assert errors, "a refused form without any error message"
    for key, messages in errors.items():
        if key.rsplit(".", 1)[-1] in (*fields, "id", "DELETE") or (
            "." in key and key.endswith(".__all__")  # shown on the inline row it is about
        ):
            continue
        text = " ".join(messages).lower()
        assert any(f.lower() in text for f in fields), (key, messages)
