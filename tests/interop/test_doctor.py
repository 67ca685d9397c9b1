"""`python -m service doctor` against the real Better Auth (tests/interop/issuer): a correct set-up
passes, and each usual misconfiguration fails with the fix for it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.auth.doctor import run_doctor
from service.settings import REPO_ROOT, load_settings
from support.better_auth import IssuerConfig, issuer_client, running_issuers, sign_up

PUBLIC_URL = "https://app.example.test"  # what Better Auth signs with; the service reaches it on 127.0.0.1
CLI_TIMEOUT_SECONDS = 60.0


@pytest.fixture(scope="module")
def issuers(node_issuer_installed, tmp_path_factory):
    configs = {
        "default": IssuerConfig(),
        "public-url": IssuerConfig(issuer=PUBLIC_URL, audience=PUBLIC_URL),
        "long-lived": IssuerConfig(expiration_time="2d"),
    }
    with running_issuers(node_issuer_installed, configs, tmp_path_factory.mktemp("doctor")) as running:
        yield running


async def live_token_and_cookie(issuer) -> tuple[str, str]:
    async with issuer_client(issuer) as http:
        user = await sign_up(http, "Doctor")
        return await user.token(), user.session_cookie


async def doctor(issuer, token: str, clock=time.time, **environ: str) -> tuple[int, str]:
    settings = load_settings({"BETTER_AUTH_URL": issuer.base_url, **environ}, dotenv=Path(os.devnull))
    out = io.StringIO()
    status = await run_doctor(settings, out, token=token, clock=clock)
    return status, out.getvalue()


def report_line(text: str, level: str, topic: str) -> str:
    """One check's line and the fix under it."""
    lines = text.splitlines()
    for number, content in enumerate(lines):
        if content.startswith(f"  {level:<5} {topic}"):
            return "\n".join(lines[number : number + 2])
    raise AssertionError(f"no {level} {topic} line in:\n{text}")


async def test_a_correct_set_up_passes_every_check_against_better_auth(issuers):
    issuer = issuers["default"]
    token, _ = await live_token_and_cookie(issuer)
    status, text = await doctor(issuer, token)
    assert status == 0, text
    assert "FAIL" not in text and "WARN" not in text, text
    assert "alg=EdDSA  OKP Ed25519  accepted for EdDSA" in text
    assert "behind the issuer" in report_line(text, "ok", "clock") or "ahead of" in report_line(text, "ok", "clock")
    assert "15 min (exp - iat)" in report_line(text, "ok", "lifetime")
    assert "accepted: sub=" in report_line(text, "ok", "verdict")


@pytest.mark.parametrize(
    ("environ", "topic", "hint"),
    [
        pytest.param({"JWT_ISSUER": "{base}/api/auth"}, "token iss", "basePath: JWT_ISSUER includes a path (/api/auth)", id="issuer-with-base-path"),
        pytest.param({"JWT_ISSUER": "{base}/"}, "token iss", "trailing slash: yours ends with a slash", id="issuer-trailing-slash"),
        pytest.param({"JWT_ISSUER": "{https}"}, "token iss", "http vs https: Better Auth's baseURL uses http", id="issuer-https"),
        pytest.param({"JWT_AUDIENCE": "tasks-api"}, "token aud", "JWT_AUDIENCE is not a URL", id="audience-not-the-origin"),
        pytest.param({"JWT_AUDIENCE": "{base}/api/auth"}, "token aud", "basePath: JWT_AUDIENCE includes a path", id="audience-with-base-path"),
        pytest.param({"JWT_ALGORITHMS": "ES256,RS256"}, "token alg", "EdDSA is not in JWT_ALGORITHMS=ES256,RS256", id="alg-not-allowed"),
        pytest.param({"JWKS_URL": "{base}/jwks"}, "JWKS", "basePath /api/auth by default", id="jwks-without-base-path"),
        pytest.param({"JWKS_URL": "{base}/api/jwks"}, "JWKS", "HTTP 404", id="jwks-wrong-base-path"),
    ],
)  # fmt: skip
async def test_each_usual_misconfiguration_fails_with_its_fix(issuers, environ, topic, hint):
    issuer = issuers["default"]
    token, _ = await live_token_and_cookie(issuer)
    https = issuer.base_url.replace("http://", "https://")
    values = {name: value.format(base=issuer.base_url, https=https) for name, value in environ.items()}
    status, text = await doctor(issuer, token, **values)
    assert status == 1, text
    assert hint in report_line(text, "FAIL", topic), text
    if topic != "JWKS":
        assert "the service would refuse this token (401)" in report_line(text, "FAIL", "verdict")


async def test_an_internal_url_where_better_auth_signs_with_its_public_one_names_both(issuers):
    issuer = issuers["public-url"]
    token, _ = await live_token_and_cookie(issuer)
    status, text = await doctor(issuer, token)
    assert status == 1
    found = report_line(text, "FAIL", "token iss")
    assert "another host: Better Auth signs with its public baseURL (app.example.test)" in found
    assert f"set JWT_ISSUER={PUBLIC_URL}" in found
    assert f"set JWT_AUDIENCE={PUBLIC_URL}" in report_line(text, "FAIL", "token aud")
    status, text = await doctor(issuer, token, JWT_ISSUER=PUBLIC_URL, JWT_AUDIENCE=PUBLIC_URL)
    assert status == 0, text


async def test_a_clock_behind_better_auths_beyond_the_leeway_fails_the_clock_and_the_token(issuers):
    issuer = issuers["default"]
    token, _ = await live_token_and_cookie(issuer)
    status, text = await doctor(issuer, token, clock=lambda: time.time() - 120)
    assert status == 1
    assert "behind the issuer (its Date header), more than JWT_LEEWAY_SECONDS=30" in report_line(text, "FAIL", "clock")
    assert "issued in the future" in report_line(text, "FAIL", "verdict")


async def test_a_token_longer_lived_than_the_ceiling_fails_and_within_a_raised_one_is_a_warning(issuers):
    issuer = issuers["long-lived"]
    token, _ = await live_token_and_cookie(issuer)
    status, text = await doctor(issuer, token)  # 2 days against the default ceiling of 1 day
    assert status == 1, text
    assert "longer than JWT_MAX_LIFETIME_SECONDS=86400" in report_line(text, "FAIL", "lifetime")
    status, text = await doctor(issuer, token, JWT_MAX_LIFETIME_SECONDS=str(3 * 86400))
    assert status == 0, text
    assert "2 d (exp - iat)" in report_line(text, "WARN", "lifetime")
    assert "shorten jwt.expirationTime" in report_line(text, "WARN", "lifetime")


def run_cli(args: list[str], environ: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m service ...` of this checkout, configured by `environ` only (no .env in `cwd`)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("JWT_", "JWKS_", "BETTER_AUTH"))}
    env.update(environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        input=stdin, cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS,
    )  # fmt: skip


async def test_the_command_checks_a_token_fetched_with_a_session_cookie_or_read_from_stdin(issuers, tmp_path):
    issuer = issuers["default"]
    token, cookie = await live_token_and_cookie(issuer)
    fetched = run_cli(["doctor", "--cookie", cookie], {"BETTER_AUTH_URL": issuer.base_url}, tmp_path)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert f"fetched from {issuer.base_url}/api/auth/token" in report_line(fetched.stdout, "ok", "token")
    assert "accepted: sub=" in report_line(fetched.stdout, "ok", "verdict")

    # The old name still answers, and exits 1 on a set-up that would refuse the token.
    environ = {"BETTER_AUTH_URL": issuer.base_url, "JWT_ISSUER": f"{issuer.base_url}/api/auth"}
    piped = run_cli(["jwks", "-"], environ, tmp_path, stdin=token)
    assert piped.returncode == 1, piped.stdout + piped.stderr
    assert "basePath" in report_line(piped.stdout, "FAIL", "token iss")
