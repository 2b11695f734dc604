"""The Redactor: every occurrence of a secret's value becomes ****, nothing else changes."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from credentials.vault import MASK, Redactor


def test_it_masks_every_occurrence_longest_first() -> None:
    redactor = Redactor(["hunter2", "hunter2-extra"])
    assert redactor.redact("a hunter2-extra b hunter2 c hunter2") == "a **** b **** c ****"


def test_it_masks_the_forms_a_bot_may_print() -> None:
    redactor = Redactor(['p@ss"word/1', "line-one\nline-two"])
    text = 'json {"pw": "p@ss\\"word/1"} url https://bot:p%40ss%22word%2F1@erp lines line-one | line-two'
    assert redactor.redact(text) == 'json {"pw": "****"} url https://bot:****@erp lines **** | ****'


def test_it_ignores_values_too_short_to_mask() -> None:
    redactor = Redactor(["abc", ""])
    assert not redactor
    assert redactor.redact("abc abc") == "abc abc"


def test_it_masks_a_value_that_masking_would_otherwise_rebuild() -> None:
    # "x" + "****" is a value again once "abcd" is masked: a second pass hides it.
    assert Redactor(["abcd", "x****"]).redact("xabcd") == MASK


def test_it_redacts_json_metadata_keys_values_and_numbers() -> None:
    redactor = Redactor(["s3cr3t-token", "424242"])
    metadata = {
        "auth": "Bearer s3cr3t-token",
        "s3cr3t-token": ["ok", {"pin": 424242, "n": 7, "flag": True, "none": None}],
        "ratio": 0.5,
    }
    assert redactor.redact_json(metadata) == {
        "auth": "Bearer ****",
        "****": ["ok", {"pin": "****", "n": 7, "flag": True, "none": None}],
        "ratio": 0.5,
    }


def test_it_returns_text_and_metadata_untouched_without_values() -> None:
    redactor = Redactor([])
    text, metadata = "nothing to hide", {"a": [1, "b"]}
    assert redactor.redact(text) is text
    assert redactor.redact_json(metadata) is metadata


SECRET_CHARS = "ab*xy-é\n"
values = st.lists(st.text(SECRET_CHARS, min_size=4, max_size=12), min_size=1, max_size=4)


@given(values, st.lists(st.text(SECRET_CHARS + " .:", max_size=10), max_size=6), st.data())
def test_property_no_value_survives_redaction(
    secrets: list[str], pieces: list[str], data: st.DataObject
) -> None:
    """Text built of random pieces and secret values holds none of the values once redacted."""
    assume(MASK not in secrets)  # a value equal to the mask cannot be told from it
    text = "".join(piece + data.draw(st.sampled_from(secrets)) for piece in pieces) + data.draw(
        st.text(SECRET_CHARS)
    )
    redacted = Redactor(secrets).redact(text)
    for value in secrets:
        assert value not in redacted
        for line in value.splitlines():
            assert len(line) < 4 or line == MASK or line not in redacted


@given(values, st.text("0123456789 ,.;:=/ABCDEFGHIJ[]{}\"'", max_size=200))
def test_property_text_without_values_is_unchanged(secrets: list[str], text: str) -> None:
    assert Redactor(secrets).redact(text) == text
