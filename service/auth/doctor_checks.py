"""The set-up doctor's judgements: pure functions from what was observed to findings in plain words.

Each finding says what was seen and, when something is off, what to change. FAIL means requests
would fail; WARN means they work today but something is fragile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from .keys import ALG_KEY_TYPES, PublicKey

CLOCK_SKEW_WARN_SECONDS = 5  # a well-run host keeps NTP far closer than this
LONG_LIFETIME_SECONDS = 24 * 3600  # beyond a day, a leaked token is a standing credential
SESSION_CACHE_TYP = "better-auth.session-cache+jwt"
ACCESS_TOKEN_TYP = "at+jwt"
RATE_LIMIT_EXEMPTION = 'rateLimit: { customRules: { "/jwks": false } }'


class Level(StrEnum):
    OK = "ok"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: str
    message: str
    hint: str = ""


def key_verdict(key: PublicKey, allowed: tuple[str, ...]) -> str:
    usable = [alg for alg in allowed if key.accepts(alg)]
    if usable:
        return f"accepted for {', '.join(usable)}"
    fits = [alg for alg in ALG_KEY_TYPES if key.accepts(alg)]
    return f"NOT accepted: fits {', '.join(fits) or 'no algorithm'}, JWT_ALGORITHMS allows {', '.join(allowed)}"


def check_keys(keys: Mapping[str, PublicKey], allowed: tuple[str, ...]) -> Finding:
    accepted = [kid for kid, key in keys.items() if any(key.accepts(alg) for alg in allowed)]
    if accepted:
        return Finding(Level.OK, "algorithms", f"{len(accepted)} of {len(keys)} key(s) fit JWT_ALGORITHMS")
    published = sorted({alg for key in keys.values() for alg in ALG_KEY_TYPES if key.accepts(alg)})
    return Finding(
        Level.FAIL,
        "algorithms",
        f"no published key fits JWT_ALGORITHMS={','.join(allowed)}",
        f"Better Auth's keys fit {', '.join(published) or 'nothing we verify'}: add its jwks.keyPairConfig.alg to JWT_ALGORITHMS",
    )


def check_token_alg(alg: object, allowed: tuple[str, ...]) -> Finding:
    if isinstance(alg, str) and alg in allowed:
        return Finding(Level.OK, "token alg", f"{alg} is allowed")
    return Finding(
        Level.FAIL,
        "token alg",
        f"{str(alg)[:32]} is not in JWT_ALGORITHMS={','.join(allowed)}",
        f"add {str(alg)[:32]} to JWT_ALGORITHMS (it is Better Auth's jwks.keyPairConfig.alg), or change that setting",
    )


def mismatch_hint(actual: str, expected: str, variable: str) -> str:
    """Why a token's iss/aud differs from the configured value, for the usual mistakes."""
    fix = f"set {variable}={actual}"
    if actual.rstrip("/") == expected.rstrip("/"):
        which = (
            "yours ends with a slash, the token's does not"
            if expected.endswith("/")
            else "the token's ends with a slash"
        )
        return f"trailing slash: {which}; compare as written, so {fix}"
    seen, wanted = urlsplit(actual), urlsplit(expected)
    if not (seen.scheme and seen.netloc):
        return f"Better Auth signs with a custom jwt.issuer/jwt.audience: {fix}, or remove that option"
    if not (wanted.scheme and wanted.netloc):
        return f"{variable} is not a URL, but Better Auth signs with {actual} (its baseURL unless jwt options say otherwise): {fix}"
    if (seen.netloc, seen.path.rstrip("/")) == (wanted.netloc, wanted.path.rstrip("/")):
        return f"http vs https: Better Auth's baseURL uses {seen.scheme}; {fix} (or fix BETTER_AUTH_URL on the Next.js side)"
    if (seen.scheme, seen.netloc) == (wanted.scheme, wanted.netloc):
        if seen.path.strip("/") and not wanted.path.strip("/"):
            return (
                f"basePath: the token's value includes Better Auth's basePath ({seen.path}), as OAuth access tokens "
                f"and a jwt.issuer with a path do; {fix}"
            )
        return (
            f"basePath: {variable} includes a path ({wanted.path}) but /api/auth/token's tokens carry the origin only; "
            f"{fix} (BETTER_AUTH_URL is the app's origin, not its auth endpoint)"
        )
    return (
        f"another host: Better Auth signs with its public baseURL ({seen.netloc}), you expect {wanted.netloc} (an internal "
        f"address?); keep an internal address in JWKS_URL only and {fix}"
    )


def check_claim(name: str, value: Any, expected: tuple[str, ...], variable: str) -> Finding:
    """iss (a string) or aud (a string or a list) against the configured values."""
    values = value if isinstance(value, list) else [value]
    if any(v in expected for v in values):
        return Finding(Level.OK, f"token {name}", f"{value!r} matches {variable}")
    shown = ",".join(expected)
    actual = next((v for v in values if isinstance(v, str)), None)
    if actual is None:
        return Finding(Level.FAIL, f"token {name}", f"{name} is missing or not a string: {value!r}")
    hints = "; or ".join(dict.fromkeys(mismatch_hint(actual, e, variable) for e in expected))
    return Finding(Level.FAIL, f"token {name}", f"{value!r} is not {variable}={shown}", hints)


def check_typ(typ: object) -> Finding:
    if typ is None or (isinstance(typ, str) and typ.upper() == "JWT"):
        return Finding(Level.OK, "token typ", f"{typ or 'none'}: a jwt() plugin token, as /api/auth/token issues")
    if typ == SESSION_CACHE_TYP:
        return Finding(
            Level.FAIL,
            "token typ",
            f"{typ}: Better Auth's session cookie cache, not an API token",
            "send the JWT from /api/auth/token (or get-session's set-auth-jwt header), not the session_data cookie",
        )
    if typ == ACCESS_TOKEN_TYP:
        return Finding(
            Level.OK,
            "token typ",
            f"{typ}: an OAuth access token from @better-auth/oauth-provider (its iss includes the basePath)",
        )
    return Finding(Level.WARN, "token typ", f"{str(typ)[:64]!r}: not a kind of token Better Auth's jwt() plugin issues")


def check_lifetime(claims: Mapping[str, Any], now: float, max_lifetime_seconds: int | None) -> Finding:
    iat, exp = _number(claims.get("iat")), _number(claims.get("exp"))
    if iat is None or exp is None:
        return Finding(Level.FAIL, "lifetime", f"iat/exp are not numbers: {claims.get('iat')!r}, {claims.get('exp')!r}")
    lifetime, remaining = int(exp - iat), int(exp - now)
    said = f"{_duration(lifetime)} (exp - iat), {_duration(remaining)} left" if remaining > 0 else ""
    if remaining <= 0:
        return Finding(Level.FAIL, "lifetime", f"expired {_duration(-remaining)} ago", "get a fresh token")
    if max_lifetime_seconds is not None and lifetime > max_lifetime_seconds:
        return Finding(
            Level.FAIL,
            "lifetime",
            f"{said}: longer than JWT_MAX_LIFETIME_SECONDS={max_lifetime_seconds}",
            "shorten Better Auth's jwt.expirationTime (default 15m), or raise the setting",
        )
    if lifetime > LONG_LIFETIME_SECONDS:
        return Finding(
            Level.WARN,
            "lifetime",
            said,
            "a leaked token is honoured that long: shorten jwt.expirationTime (default 15m)",
        )
    return Finding(Level.OK, "lifetime", said)


def check_clock(issuer_time: float | None, now: float, leeway_seconds: int) -> Finding:
    """Our clock against the issuer's `Date` header (1 s resolution)."""
    if issuer_time is None:
        return Finding(Level.WARN, "clock", "the issuer sent no Date header: skew not measured")
    skew = round(now - issuer_time)
    said = f"{abs(skew)} s {'ahead of' if skew > 0 else 'behind'} the issuer (its Date header)"
    if abs(skew) <= CLOCK_SKEW_WARN_SECONDS:
        return Finding(Level.OK, "clock", f"{said}; JWT_LEEWAY_SECONDS={leeway_seconds}")
    if skew < -leeway_seconds:
        return Finding(
            Level.FAIL,
            "clock",
            f"{said}, more than JWT_LEEWAY_SECONDS={leeway_seconds}: fresh tokens look issued in the future",
            "synchronise this host's clock (NTP)",
        )
    if skew > leeway_seconds:
        return Finding(
            Level.WARN,
            "clock",
            f"{said}: tokens count as expired {skew - leeway_seconds} s early",
            "synchronise this host's clock (NTP)",
        )
    return Finding(
        Level.WARN, "clock", f"{said}, within JWT_LEEWAY_SECONDS={leeway_seconds}", "check NTP on both hosts"
    )


def check_rate_limit(status: int, headers: Mapping[str, str]) -> Finding:
    """Better Auth's limiter (100 requests per 10 s per client IP and path in production) answers
    429 with X-Retry-After; proxies in front may add X-RateLimit-*."""
    retry = headers.get("x-retry-after") or headers.get("retry-after")
    if status == 429:
        return Finding(
            Level.FAIL,
            "rate limiter",
            f"the JWKS answered 429 (retry after {retry or '?'} s): Better Auth's rate limiter refused us",
            f"every replica behind one egress IP shares one bucket; exempt the JWKS in Better Auth: {RATE_LIMIT_EXEMPTION}",
        )
    limit, remaining = headers.get("x-ratelimit-limit"), headers.get("x-ratelimit-remaining")
    if limit and remaining and remaining.isdigit() and limit.isdigit():
        said = f"{remaining} of {limit} requests left in the window (X-RateLimit-*)"
        if int(remaining) * 10 <= int(limit):
            return Finding(
                Level.WARN, "rate limiter", said, f"nearly exhausted; exempt the JWKS: {RATE_LIMIT_EXEMPTION}"
            )
        return Finding(Level.OK, "rate limiter", said)
    return Finding(
        Level.OK,
        "rate limiter",
        "no rate-limit headers (Better Auth sends X-Retry-After only when it refuses)",
        f"in production its limiter also counts JWKS fetches; to be safe: {RATE_LIMIT_EXEMPTION}",
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
