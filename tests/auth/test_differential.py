"""Differential test: every token that joserfc's own `jwt.decode` plus a `JWTClaimsRegistry`
(iss, aud, exp, iat, sub required, nbf checked when present, the same leeway) rejects, our
verifier rejects too. (One joserfc default is relaxed, to RFC 7515's rule: see JOSE_REGISTRY.)

We parse and check claims ourselves for speed and strictness; this keeps that honest. The corpus
is generated from a fixed seed and fixed keys: valid Better Auth-shaped tokens, then mutations of
their claims (missing, wrong types, expired, not yet valid, issued in the future, wrong iss/aud,
list aud ...), of their header (alg swapped, members added or dropped, kid changed) and of the
compact form itself (segments tampered, swapped, padded, non-canonical base64, extra segments).

Where we refuse what joserfc accepts, the reason must be one of our deliberate, documented extra
rules (STRICTER_BY_DESIGN); anything else fails, so the comparison runs both ways.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey
from joserfc.jws import JWSRegistry

from service.auth.jwks import JWKSCache
from service.auth.keys import import_jwks
from service.auth.tokens import TokenVerifier
from service.errors import InvalidToken, KeysUnavailable, TokenRejection
from service.testing import SigningKey, sign_compact
from support.clock import FakeClock

NOW = 1_800_000_000
LEEWAY = 30
ISSUER = "http://issuer.test:3000"
ALGORITHMS = ("EdDSA", "ES256")
SEED = 20_250_611
RANDOM_CASES = 240

# Fixed keys, so the corpus is the same on every run (ECDSA signatures still vary; verdicts do not).
KEYS = (
    SigningKey("ed-" + "a" * 29, "EdDSA", OKPKey.import_key(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)))),
    SigningKey("es-" + "b" * 29, "ES256", ECKey.import_key(ec.derive_private_key(0xC0FFEE, ec.SECP256R1()))),
)
JWKS = {"keys": [key.public_jwk() for key in KEYS]}
DROP = object()  # a member to leave out

# Our refusals of tokens joserfc accepts, each a rule we keep on purpose: (reason, detail fragment).
STRICTER_BY_DESIGN = {
    (TokenRejection.MALFORMED, "duplicate JSON member"),  # RFC 7515 §5.2: refuse, not last-wins
    (TokenRejection.MALFORMED, "is not UTF-8"),  # RFC 8259 §8.1: no UTF-16, no byte order mark
    (TokenRejection.TYPE_REFUSED, ""),  # other typs are other token kinds (at+jwt, session cache)
    (TokenRejection.HEADER_REFUSED, ""),  # jwk, jku, x5u, x5c, crit, b64: a token never picks its key
    (TokenRejection.CLAIMS, "sub must be a non-empty printable string"),  # sub becomes a path segment
    (TokenRejection.CLAIMS, "wrong value or type"),  # NumericDates past year 5138
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = {**base, **changes}
    return {name: value for name, value in result.items() if value is not DROP}


def valid_claims(sub: str = "user-1") -> dict[str, Any]:
    return {"iat": NOW - 10, "name": "Ada", "sub": sub, "exp": NOW + 890, "iss": ISSUER, "aud": ISSUER}


CLAIM_MUTATIONS: dict[str, dict[str, Any]] = {
    "valid": {},
    **{f"drop-{name}": {name: DROP} for name in ("iss", "aud", "exp", "iat", "sub")},
    **{f"null-{name}": {name: None} for name in ("iss", "aud", "exp", "iat", "sub")},
    "exp-string": {"exp": str(NOW + 600)},
    "exp-bool": {"exp": True},
    "exp-float": {"exp": NOW + 600.5},
    "exp-nan": {"exp": math.nan},
    "exp-infinity": {"exp": math.inf},
    "exp-list": {"exp": [NOW + 600]},
    "exp-huge": {"exp": 10**30},
    "expired-long-ago": {"exp": NOW - 3600, "iat": NOW - 4500},
    "expired-at-leeway-edge": {"exp": NOW - LEEWAY},
    "expired-within-leeway": {"exp": NOW - LEEWAY + 1},
    "nbf-future": {"nbf": NOW + LEEWAY + 1},
    "nbf-at-leeway-edge": {"nbf": NOW + LEEWAY},
    "nbf-past": {"nbf": NOW - 100},
    "nbf-string": {"nbf": "soon"},
    "iat-future": {"iat": NOW + LEEWAY + 1},
    "iat-at-leeway-edge": {"iat": NOW + LEEWAY},
    "iat-string": {"iat": str(NOW)},
    "iat-negative": {"iat": -5},
    "iat-nan": {"iat": math.nan},
    "iss-wrong": {"iss": "http://evil.test"},
    "iss-trailing-slash": {"iss": ISSUER + "/"},
    "iss-number": {"iss": 42},
    "iss-list": {"iss": [ISSUER]},
    "aud-wrong": {"aud": "http://other.test"},
    "aud-list-with-us": {"aud": [ISSUER, "http://other.test"]},
    "aud-list-without-us": {"aud": ["http://other.test"]},
    "aud-list-mixed-types": {"aud": [ISSUER, 42]},
    "aud-number": {"aud": 7},
    "aud-empty-list": {"aud": []},
    "aud-empty": {"aud": ""},
    "sub-empty": {"sub": ""},
    "sub-blank": {"sub": "   "},
    "sub-number": {"sub": 42},
    "sub-control-character": {"sub": "a\x00b"},
    "sub-too-long": {"sub": "u" * 256},
    "sub-unicode": {"sub": "ユーザー"},
    "sub-list": {"sub": ["user-1"]},
    "jti-number": {"jti": 5},
    "jti-string": {"jti": "abc"},
    "extra-claims": {"scope": "tasks", "role": ["admin"], "banned": False},
}

HEADER_MUTATIONS: dict[str, Callable[[SigningKey], dict[str, Any]]] = {
    "plain": lambda key: {},
    "typ-JWT": lambda key: {"typ": "JWT"},
    "typ-jwt": lambda key: {"typ": "jwt"},
    "typ-at+jwt": lambda key: {"typ": "at+jwt"},
    "typ-number": lambda key: {"typ": 1},
    "alg-none": lambda key: {"alg": "none"},
    "alg-HS256": lambda key: {"alg": "HS256"},
    "alg-of-the-other-key": lambda key: {"alg": "ES256" if key.alg == "EdDSA" else "EdDSA"},
    "alg-lowercase": lambda key: {"alg": key.alg.lower()},
    "alg-missing": lambda key: {"alg": DROP},
    "alg-number": lambda key: {"alg": 256},
    "kid-unknown": lambda key: {"kid": "k" * 32},
    "kid-of-the-other-key": lambda key: {"kid": KEYS[1].kid if key is KEYS[0] else KEYS[0].kid},
    "kid-missing": lambda key: {"kid": DROP},
    "kid-number": lambda key: {"kid": 7},
    "kid-empty": lambda key: {"kid": ""},
    "crit": lambda key: {"crit": ["exp"]},
    "jku": lambda key: {"jku": "http://attacker.test/jwks"},
    "jwk": lambda key: {"jwk": key.public_jwk()},
    "x5u": lambda key: {"x5u": "http://attacker.test/cert"},
    "b64-false": lambda key: {"b64": False},
    "cty": lambda key: {"cty": "JWT"},
    "unknown-member": lambda key: {"foo": "bar"},
}


def _flip(segment: str, position: int) -> str:
    char = segment[position]
    return segment[:position] + ("A" if char != "A" else "B") + segment[position + 1 :]


def _non_canonical(segment: str) -> str:
    """The same bytes with the unused low bits of the last character set (if it has any)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 0b1111, 3: 0b11}.get(len(segment) % 4, 0)
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) | unused]


OTHER_PAYLOAD = b64(json.dumps(valid_claims("user-2")).encode())
TAMPERS: dict[str, Callable[[list[str]], str]] = {
    "untouched": lambda parts: ".".join(parts),
    "header-char-flipped": lambda parts: ".".join([_flip(parts[0], 5), parts[1], parts[2]]),
    "payload-char-flipped": lambda parts: ".".join([parts[0], _flip(parts[1], 7), parts[2]]),
    "signature-char-flipped": lambda parts: ".".join([parts[0], parts[1], _flip(parts[2], 3)]),
    "payload-swapped": lambda parts: ".".join([parts[0], OTHER_PAYLOAD, parts[2]]),
    "signature-truncated": lambda parts: ".".join([parts[0], parts[1], parts[2][:-4]]),
    "signature-empty": lambda parts: ".".join([parts[0], parts[1], ""]),
    "signature-dropped": lambda parts: ".".join(parts[:2]),
    "signature-padded": lambda parts: ".".join([*parts[:2], parts[2] + "=" * (-len(parts[2]) % 4 or 4)]),
    "signature-non-canonical": lambda parts: ".".join([*parts[:2], _non_canonical(parts[2])]),
    "payload-non-canonical": lambda parts: ".".join([parts[0], _non_canonical(parts[1]), parts[2]]),
    "standard-alphabet": lambda parts: ".".join(parts).replace("-", "+").replace("_", "/"),
    "extra-segment": lambda parts: ".".join([*parts, parts[2]]),
    "five-segments": lambda parts: ".".join([*parts, "", ""]),
    "trailing-dot": lambda parts: ".".join(parts) + ".",
}

RAW_PAYLOADS: dict[str, Callable[[], bytes]] = {
    "payload-array": lambda: b"[1, 2]",
    "payload-string": lambda: b'"claims"',
    "payload-not-json": lambda: b"{",
    "payload-duplicate-sub": lambda: json.dumps(valid_claims())[:-1].encode() + b', "sub": "user-2"}',
    "payload-utf16": lambda: json.dumps(valid_claims()).encode("utf-16"),
    "payload-bom": lambda: b"\xef\xbb\xbf" + json.dumps(valid_claims()).encode(),
}


@dataclass(frozen=True)
class Case:
    name: str
    token: str


def build(key: SigningKey, claims: dict[str, Any] | bytes, header_changes: dict[str, Any], tamper: str) -> str:
    header = changed({"alg": key.alg, "kid": key.kid}, header_changes)
    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return TAMPERS[tamper](sign_compact(header, payload, key.private, key.alg).split("."))


def corpus() -> list[Case]:
    cases: list[Case] = []
    for key in KEYS:  # each mutation on its own, with each key
        for name, changes in CLAIM_MUTATIONS.items():
            cases.append(
                Case(f"{key.alg}/claims:{name}", build(key, changed(valid_claims(), changes), {}, "untouched"))
            )
        for name, make_header in HEADER_MUTATIONS.items():
            cases.append(Case(f"{key.alg}/header:{name}", build(key, valid_claims(), make_header(key), "untouched")))
        for name in TAMPERS:
            cases.append(Case(f"{key.alg}/tamper:{name}", build(key, valid_claims(), {}, name)))
        for name, make_payload in RAW_PAYLOADS.items():
            cases.append(Case(f"{key.alg}/raw:{name}", build(key, make_payload(), {}, "untouched")))
    rng = random.Random(SEED)  # then combinations, mostly of one or two mutations
    claim_names, header_names, tamper_names = list(CLAIM_MUTATIONS), list(HEADER_MUTATIONS), list(TAMPERS)
    for index in range(RANDOM_CASES):
        key = rng.choice(KEYS)
        picked = rng.sample(claim_names, rng.randint(1, 3))
        claims = valid_claims()
        for name in picked:
            claims = changed(claims, CLAIM_MUTATIONS[name])
        header = rng.choice(header_names) if rng.random() < 0.3 else "plain"
        tamper = rng.choice(tamper_names) if rng.random() < 0.2 else "untouched"
        token = build(key, claims, HEADER_MUTATIONS[header](key), tamper)
        cases.append(Case(f"mix{index:03}/{key.alg}/{'+'.join(picked)}/{header}/{tamper}", token))
    return cases


CORPUS = corpus()
CLAIMS_REGISTRY = jwt.JWTClaimsRegistry(
    now=NOW,
    leeway=LEEWAY,
    iss={"essential": True, "value": ISSUER},
    aud={"essential": True, "value": ISSUER},
    exp={"essential": True},
    iat={"essential": True},
    sub={"essential": True},
)
JOSE_KEYS = KeySet.import_key_set(JWKS)  # type: ignore[arg-type]  # a JWKS dict, as joserfc documents


# joserfc refuses header members outside its registry by default; RFC 7515 §4 says a member that
# is not understood (and not listed in `crit`) must be ignored, and so do we (tests/security's
# valid/unknown-non-critical-header). Everything else is joserfc's default.
JOSE_REGISTRY = JWSRegistry(algorithms=ALGORITHMS, strict_check_header=False)


def joserfc_accepts(token: str) -> bool:
    try:
        decoded = jwt.decode(token, JOSE_KEYS, registry=JOSE_REGISTRY)
        CLAIMS_REGISTRY.validate(decoded.claims)
    except Exception:  # any refusal, however joserfc words it
        return False
    return True


def make_verifier() -> TokenVerifier:
    async def fetch() -> Any:
        return import_jwks(JWKS)

    clock = FakeClock(NOW)
    keys = JWKSCache(
        fetch,
        min_refetch_interval_seconds=0,  # an unknown kid refetches at once: no waiting in this test
        refresh_interval_seconds=300,
        max_staleness_seconds=3600,
        clock_skew_seconds=LEEWAY,
        clock=clock,
        sleep=clock.sleep,
    )
    return TokenVerifier(
        keys,
        algorithms=ALGORITHMS,
        issuers=(ISSUER,),
        audiences=(ISSUER,),
        leeway_seconds=LEEWAY,
        max_token_bytes=8192,
        token_cache_max_entries=0,  # every case is verified in full
        clock=clock,
    )


async def our_verdict(verifier: TokenVerifier, token: str) -> InvalidToken | None:
    """None when we accept; the refusal otherwise (a 503 would be a broken test set-up)."""
    try:
        await verifier.verify_token(token)
    except InvalidToken as exc:
        return exc
    except KeysUnavailable:
        pytest.fail("the keys are local here: a 503 means the test set-up is broken")
    return None


def stricter_by_design(refusal: InvalidToken) -> bool:
    return any(refusal.reason is reason and fragment in refusal.detail for reason, fragment in STRICTER_BY_DESIGN)


@pytest.fixture(scope="module")
async def verifier() -> TokenVerifier:
    verifier = make_verifier()
    assert await verifier.keys.refresh() is not None
    return verifier


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # joserfc's per-call note on "EdDSA"
@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CORPUS])
async def test_we_refuse_whatever_joserfc_refuses_and_refuse_more_only_by_design(verifier, case):
    theirs = joserfc_accepts(case.token)
    ours = await our_verdict(verifier, case.token)
    if not theirs:
        assert ours is not None, "joserfc refuses this token, we accepted it"
    elif ours is not None:
        assert stricter_by_design(ours), f"joserfc accepts; we refused ({ours.reason}: {ours.detail})"


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
async def test_corpus_is_large_and_mixes_accepted_and_refused_tokens(verifier):
    verdicts: Counter[tuple[bool, bool]] = Counter()
    for case in CORPUS:
        verdicts[joserfc_accepts(case.token), await our_verdict(verifier, case.token) is None] += 1
    assert len(CORPUS) >= 300 and len({case.token for case in CORPUS}) >= 0.9 * len(CORPUS)
    assert verdicts[True, True] >= 40, verdicts  # plenty accepted by both: the comparison has teeth
    assert verdicts[False, False] >= 150, verdicts
    assert verdicts[False, True] == 0, verdicts


def test_corpus_is_deterministic():
    again = corpus()
    stable = [case for case in CORPUS if not case.name.startswith("ES256") and "/ES256/" not in case.name]
    assert [case.name for case in again] == [case.name for case in CORPUS]
    tokens = {case.name: case.token for case in again}
    assert all(tokens[case.name] == case.token for case in stable)  # EdDSA signatures are deterministic
