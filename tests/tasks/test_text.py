"""The text rules of service/tasks/text.py as tables, and the OpenAPI patterns held to them."""

from __future__ import annotations

import re
import unicodedata

import hypothesis
import pytest
from hypothesis import strategies as st

from service.tasks.text import (
    DESCRIPTION_PATTERN,
    TITLE_PATTERN,
    normalize_description,
    normalize_search,
    normalize_title,
)

DECOMPOSED_CAFE = "Cafe\u0301"  # "Café" spelled e + COMBINING ACUTE ACCENT
COMPOSED_CAFE = "Caf\u00e9"

BIDI_CONTROLS = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]


# -- titles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, stored",
    [
        pytest.param("Buy milk", "Buy milk", id="ascii-unchanged"),
        pytest.param(DECOMPOSED_CAFE, COMPOSED_CAFE, id="decomposed-becomes-nfc"),
        pytest.param("\u212b", "\u00c5", id="angstrom-sign-becomes-a-ring"),
        pytest.param("  Buy milk ", "Buy milk", id="spaces-trimmed"),
        pytest.param("\u00a0\u3000Buy\u2003milk\u202f", "Buy\u2003milk", id="unicode-spaces-trimmed-at-the-ends-only"),
        pytest.param("a\u200bb", "a\u200bb", id="zero-width-inside-kept"),
        pytest.param("\u200f\u05e9\u05dc\u05d5\u05dd", "\u200f\u05e9\u05dc\u05d5\u05dd", id="rtl-mark-allowed"),
        pytest.param("\U0001f6d2 groceries", "\U0001f6d2 groceries", id="emoji"),
        pytest.param(
            "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", None, id="flag-with-tags"
        ),
    ],
)
def test_titles_are_stored_nfc_and_trimmed(raw, stored):
    assert normalize_title(raw) == (raw if stored is None else stored)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="spaces"),
        pytest.param("\u00a0\u2003\u3000", id="unicode-spaces"),
        pytest.param("\u200b", id="zero-width-space"),
        pytest.param("\u200c\u200d", id="zero-width-joiners"),
        pytest.param("\u2060", id="word-joiner"),
        pytest.param("\ufeff", id="byte-order-mark"),
        pytest.param("\u00ad", id="soft-hyphen"),
        pytest.param("\u3164\uffa0\u115f", id="hangul-fillers"),
        pytest.param("\u2800", id="braille-blank"),
        pytest.param("\ufe0f", id="variation-selector"),
        pytest.param("\U000e0020\U000e0041", id="tag-characters"),
        pytest.param(" \u200b \ufeff ", id="mixed"),
    ],
)
def test_a_title_with_nothing_visible_is_refused(raw):
    with pytest.raises(ValueError, match="blank"):
        normalize_title(raw)


@pytest.mark.parametrize(
    "raw, code",
    [
        pytest.param("a\x00b", "U+0000", id="nul"),
        pytest.param("a\tb", "U+0009", id="tab"),
        pytest.param("Buy milk\n", "U+000A", id="trailing-newline"),
        pytest.param("a\rb", "U+000D", id="cr"),
        pytest.param("a\x1bb", "U+001B", id="escape"),
        pytest.param("a\x7fb", "U+007F", id="del"),
        pytest.param("a\x85b", "U+0085", id="c1-next-line"),
        pytest.param("a\x9bb", "U+009B", id="c1-csi"),
    ],
)
def test_control_characters_are_refused_in_titles(raw, code):
    with pytest.raises(ValueError, match=f"control character {re.escape(code)}"):
        normalize_title(raw)


@pytest.mark.parametrize("control", [pytest.param(c, id=f"U+{ord(c):04X}") for c in BIDI_CONTROLS])
def test_bidi_controls_are_refused_in_titles(control):
    with pytest.raises(ValueError, match=f"bidirectional control U\\+{ord(control):04X}"):
        normalize_title(f"invoice{control}fdp.exe")


# -- descriptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, stored",
    [
        pytest.param("", "", id="empty-allowed"),
        pytest.param("   ", "   ", id="spaces-kept"),
        pytest.param("a\tb\nc", "a\tb\nc", id="tab-and-newline-kept"),
        pytest.param("one\r\ntwo\r\n", "one\ntwo\n", id="crlf-becomes-lf"),
        pytest.param("one\rtwo", "one\ntwo", id="lone-cr-becomes-lf"),
        pytest.param("one\r\r\ntwo", "one\n\ntwo", id="cr-then-crlf"),
        pytest.param(DECOMPOSED_CAFE, COMPOSED_CAFE, id="decomposed-becomes-nfc"),
        pytest.param("\u200b", "\u200b", id="invisible-allowed"),
    ],
)
def test_descriptions_are_stored_nfc_with_lf_line_breaks(raw, stored):
    assert normalize_description(raw) == stored


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("a\x00", id="nul"),
        pytest.param("a\x0bb", id="vertical-tab"),
        pytest.param("a\x0cb", id="form-feed"),
        pytest.param("\x1b[31mred", id="ansi-escape"),
        pytest.param("a\x7f", id="del"),
        pytest.param("a\x85", id="c1-next-line"),
        *(pytest.param(f"a{c}b", id=f"bidi-U+{ord(c):04X}") for c in BIDI_CONTROLS),
    ],
)
def test_descriptions_refuse_controls_other_than_tab_and_line_breaks(raw):
    with pytest.raises(ValueError, match="control"):
        normalize_description(raw)


def test_search_text_is_normalised_like_stored_text():
    assert normalize_search(DECOMPOSED_CAFE) == normalize_title(DECOMPOSED_CAFE) == COMPOSED_CAFE
    assert normalize_search("plain") == "plain"


# -- the OpenAPI patterns say what the rules do --------------------------------------------------


def _title_accepted(raw: str) -> bool:
    try:
        normalize_title(raw)
    except ValueError:
        return False
    return True


def _description_accepted(raw: str) -> bool:
    try:
        normalize_description(raw)
    except ValueError:
        return False
    return True


# Every character class boundary of the rules, alone and next to a visible letter.
BOUNDARY_CHARS = sorted(
    {chr(c) for c in [0x00, 0x08, 0x09, 0x0A, 0x0B, 0x0D, 0x0E, 0x1F, 0x20, 0x7E, 0x7F, 0x85, 0x9F, 0xA0, 0xAD]}
    | {chr(c) for c in [0x200A, 0x200B, 0x200F, 0x2010, 0x2028, 0x2029, 0x202F, 0x205F, 0x2060, 0x206F, 0x2070]}
    | {chr(c) for c in [0x2800, 0x2801, 0x3000, 0x3164, 0xFEFF, 0xFFA0, 0x1D173, 0xE0000, 0xE0FFF, 0xE1000]}
    | set(BIDI_CONTROLS)
)
SAMPLES = [c for c in BOUNDARY_CHARS] + [f"x{c}" for c in BOUNDARY_CHARS] + [f"{c}x{c}" for c in BOUNDARY_CHARS]


@pytest.mark.parametrize("raw", [pytest.param(s, id=repr(s)) for s in SAMPLES])
def test_title_pattern_matches_exactly_the_titles_accepted(raw):
    assert bool(re.fullmatch(TITLE_PATTERN, raw)) == _title_accepted(raw)


@pytest.mark.parametrize("raw", [pytest.param(s, id=repr(s)) for s in SAMPLES])
def test_description_pattern_matches_exactly_the_descriptions_accepted(raw):
    assert bool(re.fullmatch(DESCRIPTION_PATTERN, raw)) == _description_accepted(raw)


ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=20)


@hypothesis.given(raw=ANY_TEXT)
@hypothesis.settings(max_examples=1000, deadline=None, derandomize=True, database=None)
def test_patterns_agree_with_the_rules_on_any_text(raw):
    assert bool(re.fullmatch(TITLE_PATTERN, raw)) == _title_accepted(raw)
    assert bool(re.fullmatch(DESCRIPTION_PATTERN, raw)) == _description_accepted(raw)


def test_every_character_is_classified_the_same_by_pattern_and_rule():
    """One code point at a time, the whole of Unicode: NFC never turns an allowed character
    into a refused or invisible one, or the reverse."""
    title_class = re.compile(TITLE_PATTERN)
    description_class = re.compile(DESCRIPTION_PATTERN)
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # surrogates cannot reach a validator: the JSON parser refuses them
        char = chr(code)
        assert bool(title_class.fullmatch(char)) == _title_accepted(char), f"U+{code:04X}"
        assert bool(description_class.fullmatch(char)) == _description_accepted(char), f"U+{code:04X}"


def test_the_patterns_use_only_escapes_python_and_ecma_262_read_alike():
    for pattern in (TITLE_PATTERN, DESCRIPTION_PATTERN):
        escapes = set(re.findall(r"\\(.)", pattern))
        assert escapes <= {"u"}, escapes
        assert all(unicodedata.category(c) != "Cs" for c in pattern)
