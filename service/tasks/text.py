"""Text rules for task titles, descriptions and the search query: one normal form, no hidden controls.

Every text is normalised to NFC, so one visible string has one stored spelling and a search in
either spelling finds it. Control characters (Unicode category Cc: C0, DEL, C1) and the
bidirectional embedding, override and isolate controls are refused rather than removed: they can
make a title display as something other than what is stored, and silently dropping them would
store something the client did not send. The OpenAPI patterns below are built from the same sets
as the checks, so the documented schema and the enforced rules cannot drift apart.
"""

from __future__ import annotations

import re
import unicodedata

# Ranges as (first, last) code points.
Ranges = tuple[tuple[int, int], ...]

CONTROLS: Ranges = ((0x00, 0x1F), (0x7F, 0x9F))  # C0, DEL and C1: Unicode category Cc
# Embeddings and overrides (LRE RLE PDF LRO RLO) and isolates (LRI RLI FSI PDI). The marks
# LRM/RLM/ALM stay allowed: they change no order on their own and right-to-left text needs them.
BIDI_CONTROLS: Ranges = ((0x202A, 0x202E), (0x2066, 0x2069))

# Unicode White_Space.
WHITESPACE: Ranges = (
    (0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
    (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
)  # fmt: skip
# Unicode Default_Ignorable_Code_Point (zero-width characters, joiners, fillers, variation
# selectors, tags...): nothing is drawn for them. U+2800 BRAILLE PATTERN BLANK is not in that
# property but is drawn as an empty cell and is the usual way to fake an "empty" name.
INVISIBLE: Ranges = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x2800, 0x2800),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip


def _class_body(ranges: Ranges) -> str:
    """A regex character-class body. BMP code points are spelled \\uXXXX, which Python and
    ECMA-262 read alike; the few astral ones are written as the characters themselves."""

    def spell(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    return "".join(spell(first) if first == last else f"{spell(first)}-{spell(last)}" for first, last in ranges)


_TITLE_REFUSES = CONTROLS + BIDI_CONTROLS
# C0 without tab, LF and CR (CR is turned into LF before the check), DEL, C1, bidi controls.
_DESCRIPTION_REFUSES: Ranges = ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F), *BIDI_CONTROLS)
_BLANK = WHITESPACE + INVISIBLE

TITLE_PATTERN = (
    f"^[^{_class_body(_TITLE_REFUSES)}]*[^{_class_body(_TITLE_REFUSES + _BLANK)}][^{_class_body(_TITLE_REFUSES)}]*$"
)
DESCRIPTION_PATTERN = f"^[^{_class_body(_DESCRIPTION_REFUSES)}]*$"

# The checks use the very character classes the patterns are made of.
_TITLE_REFUSED = re.compile(f"[{_class_body(_TITLE_REFUSES)}]")
_DESCRIPTION_REFUSED = re.compile(f"[{_class_body(_DESCRIPTION_REFUSES)}]")
_VISIBLE = re.compile(f"[^{_class_body(_BLANK)}]")
# What a title loses at its ends: whitespace that is not a control (controls are refused).
_TRIMMED = "".join(
    chr(c) for first, last in WHITESPACE for c in range(first, last + 1) if not _TITLE_REFUSED.match(chr(c))
)


def _refuse(value: str, refused: re.Pattern[str]) -> None:
    found = refused.search(value)
    if found is not None:
        code = ord(found.group())
        kind = "control character" if code <= 0x9F else "bidirectional control"
        raise ValueError(f"must not contain the {kind} U+{code:04X}")


def normalize_title(value: str) -> str:
    """The title as stored: NFC, without surrounding whitespace. ValueError when it holds a
    control or bidirectional control character, or nothing visible."""
    if not value.isascii():  # NFC of ASCII is itself; skip the call on the common path
        value = unicodedata.normalize("NFC", value)
    _refuse(value, _TITLE_REFUSED)
    value = value.strip(_TRIMMED)
    if _VISIBLE.search(value) is None:
        raise ValueError("must not be blank (only whitespace or invisible characters)")
    return value


def normalize_description(value: str) -> str:
    """The description as stored: line breaks as LF (CRLF and lone CR become LF), then NFC.
    ValueError for control characters other than tab and line breaks, and bidirectional controls."""
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    _refuse(value, _DESCRIPTION_REFUSED)
    return value


def normalize_search(value: str) -> str:
    """The `q` search text in the form titles and descriptions are stored in (NFC)."""
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def normalize_label(value: str) -> str:
    """A label as stored: the title rules (NFC, trimmed, no controls, something visible)."""
    return normalize_title(value)
