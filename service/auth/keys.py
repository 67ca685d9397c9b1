"""Turning a fetched JWKS document into verification keys, and choosing a key for an `alg`.

Each key is imported on its own: a malformed or unsuitable key is skipped with a reason, never
the whole set. Private members are dropped before import, so a leaked private JWK can never be
used as anything but a public key.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

MAX_KEYS = 64
MAX_KID_LENGTH = 256
MIN_RSA_BITS = 2048

# alg -> (kty, allowed curves or None for RSA)
ALG_KEY_TYPES: dict[str, tuple[str, frozenset[str] | None]] = {
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "Ed25519": ("OKP", frozenset({"Ed25519"})),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    **{f"{family}{bits}": ("RSA", None) for family in ("RS", "PS") for bits in (256, 384, 512)},
}

_PUBLIC_MEMBERS = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}
_IMPORTERS: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}


class JWKSProblem(StrEnum):
    """Why a fetch gave no usable key set: the closed set behind `JWKSError`."""

    HTTP_STATUS = "http_status"  # anything but 200, redirects included
    RATE_LIMITED = "rate_limited"  # 429, or 503 naming a retry time: no fetch before it
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # connection refused, DNS, TLS, reset ...
    NOT_JSON = "not_json"
    NOT_A_JWKS = "not_a_jwks"  # JSON, but not {"keys": [...]}
    NO_USABLE_KEY = "no_usable_key"


class JWKSError(Exception):
    """The JWKS host did not give us a usable key set. The message says why in words safe for
    logs and /readyz: it never holds the URL (whoever knows the URL logs it)."""

    def __init__(self, problem: JWKSProblem, message: str, *, retry_after_seconds: float | None = None) -> None:
        self.problem = problem
        self.retry_after_seconds = retry_after_seconds  # the host asked for no fetch before then
        super().__init__(message)


class UnusableKey(Exception):
    """One JWK that cannot verify our tokens; the message names its kid and why. The rest of the
    set is unaffected."""


@dataclass(frozen=True)
class PublicKey:
    kid: str
    kty: str
    crv: str | None
    alg: str | None
    key: RSAKey | ECKey | OKPKey

    def accepts(self, alg: str) -> bool:
        """True when this key may verify a signature made with `alg` (RFC 8725 §3.1)."""
        wanted = ALG_KEY_TYPES.get(alg)
        if wanted is None or self.kty != wanted[0]:
            return False
        curves = wanted[1]
        if curves is not None and self.crv not in curves:
            return False
        return self.alg is None or self.alg == alg


@dataclass(frozen=True)
class ImportedKeys:
    keys: dict[str, PublicKey]
    skipped: tuple[str, ...]  # one human-readable reason per key not taken


@dataclass(frozen=True)
class KeySet:
    """The keys of one successful fetch, as the key cache holds them."""

    keys: dict[str, PublicKey]
    fetch_started_at: float  # wall clock when the request that produced it was sent
    usable_until: float  # past this (the maximum staleness) it verifies nothing
    generation: int  # moves on only when a key is withdrawn or replaced, never when one is added


def import_jwks(document: Any) -> ImportedKeys:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JWKSError(JWKSProblem.NOT_A_JWKS, 'not a JWKS: expected a JSON object {"keys": [...]}')
    keys: dict[str, PublicKey] = {}
    skipped: list[str] = []
    for index, entry in enumerate(document["keys"]):
        if index >= MAX_KEYS:
            skipped.append(f"keys beyond the first {MAX_KEYS} ignored")
            break
        try:
            key = import_public_key(entry)
        except UnusableKey as exc:
            skipped.append(f"key #{index}: {exc}")
            continue
        if key is None:
            continue  # symmetric or unknown type: not ours to verify with, silently ignored
        if key.kid in keys:
            # Deterministic: the first key published under a kid wins.
            skipped.append(f"key #{index}: duplicate kid {key.kid!r}, keeping the first")
            continue
        keys[key.kid] = key
    return ImportedKeys(keys=keys, skipped=tuple(skipped))


def import_public_key(entry: Any) -> PublicKey | None:
    """One JWK -> PublicKey; None for key types we ignore (`oct`, unknown); UnusableKey otherwise."""
    if not isinstance(entry, dict):
        raise UnusableKey("not a JSON object")
    kty = entry.get("kty")
    if not isinstance(kty, str):
        raise UnusableKey("kty must be a string")
    if kty not in _IMPORTERS:
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise UnusableKey("missing or invalid kid")
    use = entry.get("use")
    if use is not None and use != "sig":
        raise UnusableKey(f"kid {kid!r}: use is {use!r}, not 'sig'")
    key_ops = entry.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise UnusableKey(f"kid {kid!r}: key_ops does not allow 'verify'")
    alg = entry.get("alg")
    if alg is not None and (not isinstance(alg, str) or alg not in ALG_KEY_TYPES):
        raise UnusableKey(f"kid {kid!r}: alg {alg!r} is not an asymmetric signature algorithm")

    public = {name: entry[name] for name in _PUBLIC_MEMBERS[kty] if name in entry}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # small RSA keys: refused below, with a reason
            key = _IMPORTERS[kty].import_key(public)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise UnusableKey(f"kid {kid!r}: cannot import {kty} key ({type(exc).__name__})") from None

    crv = public.get("crv") if kty != "RSA" else None
    if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
        raise UnusableKey(f"kid {kid!r}: RSA key of {key.raw_value.key_size} bits, at least {MIN_RSA_BITS} required")
    if kty == "OKP" and crv not in ("Ed25519", "Ed448"):
        raise UnusableKey(f"kid {kid!r}: OKP curve {crv!r} cannot sign")
    if alg is not None and not PublicKey(kid, kty, crv, None, key).accepts(alg):
        raise UnusableKey(f"kid {kid!r}: alg {alg} does not fit a {kty} {crv or ''} key".replace("  ", " "))
    return PublicKey(kid=kid, kty=kty, crv=crv, alg=alg, key=key)
