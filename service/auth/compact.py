"""Strict parsing of a compact JWS: three unpadded, canonical base64url segments; a header and
payload that are UTF-8 JSON objects without duplicate members. Anything else is a 401."""

from __future__ import annotations

import binascii
import json
import re
from typing import Any

from ..errors import InvalidToken, TokenRejection

_SEGMENT = re.compile(rb"[A-Za-z0-9_-]+")


def split_compact(raw: bytes) -> tuple[bytes, bytes, bytes]:
    parts = raw.split(b".")
    if len(parts) == 5:
        raise InvalidToken(TokenRejection.MALFORMED, "encrypted tokens (JWE) are not accepted")
    if len(parts) != 3:
        raise InvalidToken(TokenRejection.MALFORMED, "token must have three dot-separated segments")
    for part in parts:
        if not _SEGMENT.fullmatch(part):
            raise InvalidToken(TokenRejection.MALFORMED, "token segments must be unpadded base64url")
    return parts[0], parts[1], parts[2]


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SEXTET = {char: index for index, char in enumerate(_ALPHABET)}
# Length mod 4 -> the low bits of the last character that encode no data and must be zero.
_PADDING_BITS = {0: 0, 2: 0b1111, 3: 0b11}
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def b64decode(segment: bytes, what: str) -> bytes:
    """Decode one unpadded base64url segment (already checked against the alphabet by
    split_compact); canonical only: stray low bits in the last character would give two spellings
    of one token. (Checking the bits costs less than encoding again to compare.)"""
    unused = _PADDING_BITS.get(len(segment) % 4)
    if not segment or unused is None:
        raise InvalidToken(TokenRejection.MALFORMED, f"{what} is not base64url")
    if _SEXTET[segment[-1]] & unused:
        raise InvalidToken(TokenRejection.MALFORMED, f"{what} is not canonical base64url")
    try:
        return binascii.a2b_base64(segment.translate(_TO_STANDARD) + b"=" * (-len(segment) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidToken(TokenRejection.MALFORMED, f"{what} is not base64url") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise InvalidToken(TokenRejection.MALFORMED, f"duplicate JSON member {name[:32]!r}")
        result[name] = value
    return result


_JSON = json.JSONDecoder(object_pairs_hook=_reject_duplicates)  # built once, not per token


def decode_json_segment(segment: bytes, what: str) -> dict[str, Any]:
    decoded = b64decode(segment, what)
    # UTF-8 only (RFC 7515 §5.2, RFC 8259 §8.1): json.loads(bytes) would also take UTF-16, a BOM
    # and encoded surrogates.
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidToken(TokenRejection.MALFORMED, f"{what} is not UTF-8") from None
    if text.startswith("\ufeff"):
        raise InvalidToken(TokenRejection.MALFORMED, f"{what} is not UTF-8 JSON (it starts with a byte order mark)")
    try:
        value = _JSON.decode(text)
    except (ValueError, RecursionError):
        raise InvalidToken(TokenRejection.MALFORMED, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(TokenRejection.MALFORMED, f"{what} must be a JSON object")
    return value
