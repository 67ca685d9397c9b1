"""`python -m service doctor`: what it concludes from a JWKS host and a token, and the fix it names.
Against respx and the kit's fake issuer here; against the real Better Auth in tests/interop/test_doctor.py."""

from __future__ import annotations

import io
from email.utils import formatdate

import httpx
import pytest
import respx
from joserfc.jwk import RSAKey

from service.auth.doctor import run_doctor
from service.auth.doctor_checks import Level, check_clock, check_lifetime, check_rate_limit, mismatch_hint
from service.settings import Settings
from service.testing import FakeBetterAuth, MovableClock

NOW = 1_800_000_000.0


@pytest.fixture
def clock():
    return MovableClock(NOW)


@pytest.fixture
def issuer(clock):
    return FakeBetterAuth("http://issuer.test", clock=clock)


@pytest.fixture
def settings(issuer):
    return Settings(better_auth_url=issuer.base_url)


def jwks_answer(issuer: FakeBetterAuth, *, date: float | None = NOW, **headers: str) -> httpx.Response:
    extra = {"Date": formatdate(date, usegmt=True)} if date is not None else {}
    return httpx.Response(200, json=issuer.jwks(), headers={**extra, **headers})


async def doctor(settings, clock, route_answer, token=None, cookie=None, token_answer=None) -> tuple[int, str]:
    out = io.StringIO()
    with respx.mock(assert_all_called=True) as router:
        router.get(settings.jwks_url).mock(side_effect=route_answer)
        if token_answer is not None:
            router.get(settings.jwks_url.removesuffix("/jwks") + "/token").mock(return_value=token_answer)
        status = await run_doctor(settings, out, token=token, cookie=cookie, clock=clock)
    return status, out.getvalue()


def line(text: str, level: str, topic: str) -> str:
    """The report line of one check (its fix, if any, is on the next line)."""
    lines = text.splitlines()
    for number, content in enumerate(lines):
        if content.startswith(f"  {level:<5} {topic}"):
            return "\n".join(lines[number : number + 2])
    raise AssertionError(f"no {level} {topic} line in:\n{text}")


async def test_a_healthy_deployment_passes_every_check_and_exits_0(issuer, settings, clock):
    status, text = await doctor(settings, clock, lambda _: jwks_answer(issuer), token=issuer.issue_token("u1"))
    assert status == 0, text
    assert "FAIL" not in text and "WARN" not in text
    for topic in ("JWKS", "algorithms", "rate limiter", "clock", "token typ", "token alg", "token iss", "token aud"):
        line(text, "ok", topic)
    assert "15 min (exp - iat), 15 min left" in line(text, "ok", "lifetime")
    assert "accepted: sub=u1" in line(text, "ok", "verdict")


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # the deliberately weak test key
async def test_lists_each_key_with_its_verdict(issuer, settings, clock):
    ed, es = issuer.current_key, issuer.rotate("ES256")
    weak = {
        "kty": "RSA",
        "kid": "weak",
        **{k: v for k, v in RSAKey.generate_key(1024).as_dict(private=False).items() if k in ("n", "e")},
    }

    def answer(_):
        return httpx.Response(200, json={"keys": [*issuer.jwks()["keys"], weak]})

    status, text = await doctor(settings.replace(jwt_algorithms=("EdDSA",)), clock, answer)
    assert status == 0, text
    assert f"kid={ed.kid}  alg=EdDSA  OKP Ed25519  accepted for EdDSA" in text
    assert f"kid={es.kid}  alg=ES256  EC P-256  NOT accepted" in text
    assert "skipped" in text and "1024 bits" in text
    assert "1 of 2 key(s) fit JWT_ALGORITHMS" in line(text, "ok", "algorithms")


async def test_keys_and_a_token_outside_jwt_algorithms_fail_with_the_setting_to_change(settings, clock):
    issuer = FakeBetterAuth("http://issuer.test", "ES256", clock=clock)
    status, text = await doctor(
        settings.replace(jwt_algorithms=("EdDSA",)),
        clock,
        lambda _: jwks_answer(issuer),
        token=issuer.issue_token("u1"),
    )
    assert status == 1
    assert "add its jwks.keyPairConfig.alg to JWT_ALGORITHMS" in line(text, "FAIL", "algorithms")
    assert "ES256 is not in JWT_ALGORITHMS=EdDSA" in line(text, "FAIL", "token alg")
    assert "alg 'ES256' is not allowed" in line(text, "FAIL", "verdict")


@pytest.mark.parametrize(
    ("answer", "said", "fix"),
    [
        pytest.param(httpx.ConnectError("refused"), "ConnectError", "internal address", id="unreachable"),
        pytest.param(httpx.Response(404), "HTTP 404", "basePath /api/auth by default", id="not-found"),
        pytest.param(
            httpx.Response(308, headers={"Location": "https://issuer.test/api/auth/jwks"}),
            "HTTP 308",
            "redirects to https://issuer.test/api/auth/jwks",
            id="redirect",
        ),
        pytest.param(httpx.Response(200, text="<html>"), "not JSON", "an app page?", id="html-page"),
    ],
)
async def test_a_jwks_that_cannot_be_used_fails_with_a_precise_fix(settings, clock, answer, said, fix):
    def respond(_):
        if isinstance(answer, Exception):
            raise answer
        return answer

    status, text = await doctor(settings, clock, respond)
    assert status == 1
    found = line(text, "FAIL", "JWKS")
    assert said in found and fix in found


async def test_better_auths_rate_limiter_refusing_the_jwks_fails_and_names_the_exemption(issuer, settings, clock):
    issuer.refuse_jwks(retry_after_seconds=7)
    status, text = await doctor(settings, clock, issuer.jwks_response, token=issuer.issue_token("u1"))
    assert status == 1
    found = line(text, "FAIL", "rate limiter")
    assert "429 (retry after 7 s)" in found and 'customRules: { "/jwks": false }' in found
    assert "verdict" not in text  # no keys, no token verdict


@pytest.mark.parametrize(
    ("headers", "level"),
    [
        pytest.param({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "5"}, Level.WARN, id="nearly-exhausted"),
        pytest.param({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "80"}, Level.OK, id="plenty-left"),
        pytest.param({}, Level.OK, id="no-headers"),
        pytest.param({"X-Retry-After": "4"}, Level.FAIL, id="refused"),
    ],
)
def test_rate_limit_headers_are_read_as_better_auth_and_proxies_send_them(headers, level):
    status = 429 if "X-Retry-After" in headers else 200
    assert check_rate_limit(status, {k.lower(): v for k, v in headers.items()}).level is level


@pytest.mark.parametrize(
    ("issuer_offset", "level", "said"),
    [
        pytest.param(2, Level.OK, "2 s behind the issuer", id="in-step"),
        pytest.param(-20, Level.WARN, "within JWT_LEEWAY_SECONDS=30", id="within-leeway"),
        pytest.param(-90, Level.WARN, "tokens count as expired 60 s early", id="ahead"),
        pytest.param(90, Level.FAIL, "fresh tokens look issued in the future", id="behind"),
    ],
)
def test_clock_skew_is_measured_against_the_issuers_date_header(issuer_offset, level, said):
    finding = check_clock(NOW + issuer_offset, NOW, 30)
    assert finding.level is level and said in finding.message


async def test_a_missing_date_header_is_a_warning_and_a_skewed_clock_shows_in_the_report(issuer, settings, clock):
    status, text = await doctor(settings, clock, lambda _: jwks_answer(issuer, date=None))
    assert status == 0 and "no Date header" in line(text, "WARN", "clock")
    status, text = await doctor(settings, clock, lambda _: jwks_answer(issuer, date=NOW + 120))
    assert status == 1 and "120 s behind the issuer" in line(text, "FAIL", "clock")


@pytest.mark.parametrize(
    ("actual", "expected", "hint"),
    [
        pytest.param("https://app.example.com", "https://app.example.com/", "trailing slash: yours ends", id="slash"),
        pytest.param("http://app.example.com", "https://app.example.com", "http vs https", id="scheme"),
        pytest.param("https://app.example.com/api/auth", "https://app.example.com", "includes Better Auth's basePath (/api/auth)", id="token-has-base-path"),
        pytest.param("https://app.example.com", "https://app.example.com/api/auth", "JWT_ISSUER includes a path (/api/auth)", id="setting-has-base-path"),
        pytest.param("https://app.example.com", "http://nextjs.internal:3000", "another host", id="internal-url"),
        pytest.param("tasks-api", "https://app.example.com", "custom jwt.issuer", id="custom-value"),
        pytest.param("https://app.example.com", "tasks-api", "JWT_ISSUER is not a URL", id="setting-not-a-url"),
    ],
)  # fmt: skip
def test_an_iss_mismatch_names_the_usual_mistake_and_the_value_to_set(actual, expected, hint):
    said = mismatch_hint(actual, expected, "JWT_ISSUER")
    assert hint in said and f"set JWT_ISSUER={actual}" in said


async def test_a_wrong_audience_fails_the_token_and_the_verdict(issuer, settings, clock):
    status, text = await doctor(
        settings.replace(jwt_audience="https://api.example.com"),
        clock,
        lambda _: jwks_answer(issuer),
        token=issuer.issue_token("u1"),
    )
    assert status == 1
    assert "set JWT_AUDIENCE=http://issuer.test" in line(text, "FAIL", "token aud")
    assert "invalid 'aud' claim" in line(text, "FAIL", "verdict")


async def test_the_session_cookie_cache_jwt_is_named_for_what_it_is(issuer, settings, clock):
    status, text = await doctor(
        settings, clock, lambda _: jwks_answer(issuer), token=issuer.issue_session_cache_token("u1")
    )
    assert status == 1
    assert "session cookie cache, not an API token" in line(text, "FAIL", "token typ")


async def test_an_oauth_access_token_is_recognised_by_its_typ(issuer, settings, clock):
    token = issuer.issue_access_token("u1", "openid tasks:read")
    status, text = await doctor(settings, clock, lambda _: jwks_answer(issuer), token=token)
    assert "an OAuth access token from @better-auth/oauth-provider" in line(text, "ok", "token typ")
    assert "includes Better Auth's basePath" in line(text, "FAIL", "token iss")
    assert status == 1


@pytest.mark.parametrize(
    ("lifetime", "age", "maximum", "level", "said"),
    [
        pytest.param(900, 0, None, Level.OK, "15 min (exp - iat), 15 min left", id="default"),
        pytest.param(30 * 86400, 0, None, Level.WARN, "30 d (exp - iat)", id="long-lived"),
        pytest.param(7200, 0, 3600, Level.FAIL, "longer than JWT_MAX_LIFETIME_SECONDS=3600", id="over-the-ceiling"),
        pytest.param(900, 960, None, Level.FAIL, "expired 1 min ago", id="expired"),
    ],
)
def test_the_tokens_lifetime_is_judged_against_the_ceiling(lifetime, age, maximum, level, said):
    finding = check_lifetime({"iat": NOW - age, "exp": NOW - age + lifetime}, NOW, maximum)
    assert finding.level is level and said in finding.message


async def test_a_session_cookie_fetches_a_live_token_from_better_auth(issuer, settings, clock):
    answer = httpx.Response(200, json={"token": issuer.issue_token("u9")})
    status, text = await doctor(settings, clock, lambda _: jwks_answer(issuer), cookie="c=1", token_answer=answer)
    assert status == 0, text
    assert "fetched from http://issuer.test/api/auth/token" in line(text, "ok", "token")
    assert "sub=u9" in line(text, "ok", "verdict")


async def test_a_stale_session_cookie_fails_with_what_to_do(issuer, settings, clock):
    answer = httpx.Response(401, json={"message": "Unauthorized"})
    status, text = await doctor(settings, clock, lambda _: jwks_answer(issuer), cookie="c=1", token_answer=answer)
    assert status == 1
    assert "answered 401, no token" in line(text, "FAIL", "token") and "sign in again" in text


async def test_a_token_that_is_not_a_jwt_is_reported_not_raised(issuer, settings, clock):
    status, text = await doctor(settings, clock, lambda _: jwks_answer(issuer), token="Bearer abc")
    assert status == 1 and "not a JWT" in line(text, "FAIL", "token")
