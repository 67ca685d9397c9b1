"""`python -m service doctor [TOKEN | --cookie COOKIE]`: this deployment checked against its Better Auth.

Fetches the JWKS exactly as the service does and judges it (reachable, keys fit JWT_ALGORITHMS,
rate limiter, clock skew by its Date header); with a live token (given, or fetched from
/api/auth/token with a session cookie) also its typ, alg, iss, aud and lifetime, then whether the
service would accept it. Prints one line per check, a fix for each problem, and exits 1 when
something would make requests fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TextIO

import httpx

from ..errors import InvalidToken, KeysUnavailable
from ..settings import Settings
from .compact import decode_json_segment, split_compact
from .doctor_checks import (
    Finding,
    Level,
    check_claim,
    check_clock,
    check_keys,
    check_lifetime,
    check_rate_limit,
    check_token_alg,
    check_typ,
    key_verdict,
)
from .fetch import fetch_jwks
from .keys import ImportedKeys, JWKSError, JWKSProblem
from .verifier import build_verifier

TOKEN_FETCH_TIMEOUT_SECONDS = 10.0


@dataclass
class Report:
    out: TextIO
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)
        print(f"  {finding.level:<5} {finding.topic:<13} {finding.message}", file=self.out)
        if finding.hint and finding.level is not Level.OK:
            print(f"{'':<22}fix: {finding.hint}", file=self.out)

    def detail(self, line: str) -> None:
        print(f"{'':<22}{line}", file=self.out)

    def finish(self) -> int:
        failures = sum(f.level is Level.FAIL for f in self.findings)
        warnings = sum(f.level is Level.WARN for f in self.findings)
        if failures:
            print(f"{failures} problem(s) would make requests fail; {warnings} warning(s).", file=self.out)
            return 1
        print(f"No problem that would make requests fail; {warnings} warning(s).", file=self.out)
        return 0


@dataclass
class LastResponse:
    """The status and headers of the latest answer, which fetch_jwks does not return."""

    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)

    async def record(self, response: httpx.Response) -> None:
        self.status, self.headers = response.status_code, response.headers

    def date(self) -> float | None:
        try:
            return parsedate_to_datetime(self.headers["date"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return None


async def run_doctor(
    settings: Settings,
    out: TextIO,
    *,
    token: str | None = None,
    cookie: str | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Print the checks; 0 when nothing would make requests fail, else 1."""
    report = Report(out)
    last = LastResponse()
    print(f"Checking against JWKS_URL={settings.jwks_url}", file=out)
    async with httpx.AsyncClient(follow_redirects=False, event_hooks={"response": [last.record]}) as http:
        keys = await check_jwks(settings, http, last, report, clock)
        if cookie is not None:
            token = await fetch_token(settings, http, cookie, last, report)
        if token is not None and keys is not None:
            await check_token(settings, http, token.strip(), report, clock)
    return report.finish()


async def check_jwks(
    settings: Settings, http: httpx.AsyncClient, last: LastResponse, report: Report, clock: Callable[[], float]
) -> ImportedKeys | None:
    try:
        imported = await fetch_jwks(
            http,
            settings.jwks_url,
            timeout_seconds=settings.jwks_fetch_timeout_seconds,
            max_bytes=settings.jwks_max_bytes,
        )
    except JWKSError as exc:
        if last.status == 429:
            report.add(check_rate_limit(last.status, last.headers))
        else:
            report.add(Finding(Level.FAIL, "JWKS", f"cannot be used: {exc}", jwks_hint(exc, last)))
        return None
    report.add(Finding(Level.OK, "JWKS", f"reachable: {len(imported.keys)} usable key(s)"))
    for kid, key in imported.keys.items():
        shape = f"{key.kty} {key.crv}" if key.crv else key.kty
        report.detail(f"kid={kid}  alg={key.alg or '-'}  {shape}  {key_verdict(key, settings.jwt_algorithms)}")
    for reason in imported.skipped:
        report.detail(f"skipped: {reason}")
    report.add(check_keys(imported.keys, settings.jwt_algorithms))
    report.add(check_rate_limit(last.status, last.headers))
    report.add(check_clock(last.date(), clock(), settings.jwt_leeway_seconds))
    return imported


def jwks_hint(exc: JWKSError, last: LastResponse) -> str:
    if exc.problem is JWKSProblem.HTTP_STATUS and 300 <= last.status < 400:
        where = last.headers.get("location", "elsewhere")
        return f"it redirects to {where}, which the service never follows: set JWKS_URL to the final URL"
    if exc.problem is JWKSProblem.HTTP_STATUS and last.status == 404:
        return (
            "Better Auth serves it at {baseURL}{basePath}/jwks (basePath /api/auth by default) with the jwt() plugin on"
        )
    if exc.problem in (JWKSProblem.UNREACHABLE, JWKSProblem.TIMEOUT):
        return "check JWKS_URL from this host; inside a cluster it may point at an internal address (iss stays public)"
    if exc.problem in (JWKSProblem.NOT_JSON, JWKSProblem.NOT_A_JWKS):
        return "that URL is not Better Auth's JWKS (an app page?): check the basePath in JWKS_URL"
    return "see the reason above"


async def fetch_token(
    settings: Settings, http: httpx.AsyncClient, cookie: str, last: LastResponse, report: Report
) -> str | None:
    """GET {auth endpoint}/token with a session cookie, as the Next.js app does."""
    base = settings.jwks_url.removesuffix("/jwks") if settings.jwks_url.endswith("/jwks") else settings.better_auth_url
    url = f"{base}/token"
    try:
        response = await http.get(url, headers={"Cookie": cookie}, timeout=TOKEN_FETCH_TIMEOUT_SECONDS)
        token = response.json().get("token") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        report.add(Finding(Level.FAIL, "token", f"GET {url} failed: {type(exc).__name__}"))
        return None
    if response.status_code == 429:
        report.add(check_rate_limit(last.status, last.headers))
    if not isinstance(token, str):
        hint = "sign in again and pass the better-auth.session_token cookie (name=value)"
        report.add(Finding(Level.FAIL, "token", f"GET {url} answered {response.status_code}, no token", hint))
        return None
    report.add(Finding(Level.OK, "token", f"fetched from {url} with the session cookie"))
    return token


async def check_token(
    settings: Settings, http: httpx.AsyncClient, token: str, report: Report, clock: Callable[[], float]
) -> None:
    try:
        header_b64, payload_b64, _ = split_compact(token.encode("utf-8", "surrogateescape"))
        header: dict[str, Any] = decode_json_segment(header_b64, "header")
        claims: dict[str, Any] = decode_json_segment(payload_b64, "payload")
    except InvalidToken as exc:
        report.add(
            Finding(Level.FAIL, "token", f"not a JWT: {exc.detail}", "pass the compact token, without 'Bearer '")
        )
        return
    report.add(check_typ(header.get("typ")))
    report.add(check_token_alg(header.get("alg"), settings.jwt_algorithms))
    report.add(check_claim("iss", claims.get("iss"), settings.jwt_issuers, "JWT_ISSUER"))
    report.add(check_claim("aud", claims.get("aud"), settings.jwt_audiences, "JWT_AUDIENCE"))
    report.add(check_lifetime(claims, clock(), settings.jwt_max_lifetime_seconds))

    verifier = build_verifier(settings, http, clock=clock, token_cache_max_entries=0, min_refetch_interval_seconds=0)
    await verifier.keys.refresh()
    try:
        principal = await verifier.verify_token(token)
    except (InvalidToken, KeysUnavailable) as exc:
        report.add(Finding(Level.FAIL, "verdict", f"the service would refuse this token ({exc.status}): {exc.detail}"))
        return
    remaining = int(principal.expires_at - clock())
    report.add(
        Finding(Level.OK, "verdict", f"accepted: sub={principal.user_id} kid={principal.kid}, {remaining} s left")
    )
