"""`python -m service jwks [TOKEN]`: the ops view of the key set and of one token."""

from __future__ import annotations

import io

import httpx
import pytest
import respx
from joserfc.jwk import RSAKey

from service.auth.inspect import inspect_jwks
from service.settings import Settings
from service.testing import FakeBetterAuth


@pytest.fixture
def issuer():
    return FakeBetterAuth("http://issuer.test")


@pytest.fixture
def settings(issuer):
    return Settings(
        better_auth_url=issuer.base_url,
        jwks_url=issuer.jwks_url,
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
    )


async def run(settings, token=None) -> tuple[int, str]:
    out = io.StringIO()
    return await inspect_jwks(settings, token, out), out.getvalue()


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # the deliberately weak test key
async def test_lists_each_key_with_its_verdict(issuer, settings):
    ed, es = issuer.current_key, issuer.rotate("ES256")
    weak = {
        "kty": "RSA",
        "kid": "weak",
        **{k: v for k, v in RSAKey.generate_key(1024).as_dict(private=False).items() if k in ("n", "e")},
    }
    with respx.mock(assert_all_called=True) as router:
        router.get(issuer.jwks_url).mock(
            return_value=httpx.Response(200, json={"keys": [*issuer.jwks()["keys"], weak]})
        )
        status, text = await run(settings.replace(jwt_algorithms=("EdDSA",)))
    assert status == 0
    assert f"kid={ed.kid}  alg=EdDSA  OKP Ed25519  accepted for EdDSA" in text
    assert f"kid={es.kid}  alg=ES256  EC P-256  NOT accepted" in text
    assert "skipped" in text and "1024 bits" in text


@pytest.mark.parametrize("good", [True, False], ids=["valid", "expired"])
async def test_says_whether_a_token_verifies_and_why_not(issuer, settings, good):
    token = issuer.issue_token("u1", claims={} if good else {"exp": 1, "iat": 0})
    with respx.mock(assert_all_called=True) as router:
        issuer.mock(router)
        status, text = await run(settings, token)
    if good:
        assert status == 0 and "token: valid: sub=u1" in text
    else:
        assert status == 1 and "token: REJECTED (401): token has expired" in text


async def test_unreachable_jwks_is_reported_not_raised(settings, issuer):
    with respx.mock(assert_all_called=True) as router:
        router.get(issuer.jwks_url).mock(side_effect=httpx.ConnectError("refused"))
        status, text = await run(settings)
    assert status == 1 and "cannot be used: ConnectError" in text
