"""service/auth/keys.py: importing a JWKS key by key, and which key may verify which `alg`."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, OKPKey, RSAKey

from service.auth.keys import MAX_KEYS, JWKSError, JWKSProblem, PublicKey, UnusableKey, import_jwks, import_public_key


def ed25519(kid: str = "ed", **extra) -> dict:
    return {**OKPKey.generate_key("Ed25519").as_dict(private=False), "kid": kid, "alg": "EdDSA", **extra}


def ec(crv: str, kid: str, alg: str | None, **extra) -> dict:
    jwk = {**ECKey.generate_key(crv).as_dict(private=False), "kid": kid, **extra}
    return jwk if alg is None else {**jwk, "alg": alg}


def b64_int(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()


def rsa_jwk(kid: str = "rsa", alg: str | None = "RS256", bits: int = 2048, **extra) -> dict:
    if bits < 2048:  # joserfc refuses to make small keys quietly; build the JWK by hand
        numbers = rsa.generate_private_key(65537, bits).public_key().public_numbers()
        jwk = {"kty": "RSA", "n": b64_int(numbers.n), "e": b64_int(numbers.e)}
    else:
        jwk = RSAKey.generate_key(bits).as_dict(private=False)
    jwk = {**jwk, "kid": kid, **extra}
    return jwk if alg is None else {**jwk, "alg": alg}


@pytest.fixture(scope="module")
def good_keys() -> list[dict]:
    return [ed25519("k-ed"), ec("P-256", "k-p256", "ES256"), ec("P-521", "k-p521", "ES512"), rsa_jwk("k-rsa", "PS256")]


def test_good_set_of_ed25519_p256_p521_and_rsa_keys_imports_every_key(good_keys):
    imported = import_jwks({"keys": good_keys})
    assert imported.skipped == ()
    assert list(imported.keys) == ["k-ed", "k-p256", "k-p521", "k-rsa"]
    shapes = {kid: (key.kty, key.crv, key.alg) for kid, key in imported.keys.items()}
    assert shapes == {
        "k-ed": ("OKP", "Ed25519", "EdDSA"),
        "k-p256": ("EC", "P-256", "ES256"),
        "k-p521": ("EC", "P-521", "ES512"),
        "k-rsa": ("RSA", None, "PS256"),
    }
    assert all(key.key.is_private is False for key in imported.keys.values())


def test_key_without_alg_or_use_as_better_auth_publishes_it_is_imported():
    jwk = {k: v for k, v in ed25519("plain").items() if k != "alg"}
    key = import_public_key(jwk)
    assert key is not None and key.alg is None and key.kid == "plain"


def test_symmetric_oct_and_unknown_key_types_are_ignored_silently(good_keys):
    oct_key = {"kty": "oct", "kid": "secret", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256"}
    unknown = {"kty": "AKP", "kid": "post-quantum", "pub": "AAAA"}
    imported = import_jwks({"keys": [oct_key, good_keys[0], unknown]})
    assert list(imported.keys) == ["k-ed"]
    assert imported.skipped == ()


@pytest.mark.parametrize(
    "make_private_jwk",
    [
        pytest.param(lambda: OKPKey.generate_key("Ed25519").as_dict(private=True), id="ed25519-d"),
        pytest.param(lambda: ECKey.generate_key("P-256").as_dict(private=True), id="p256-d"),
        pytest.param(lambda: RSAKey.generate_key(2048).as_dict(private=True), id="rsa-d-p-q-dp-dq-qi"),
    ],
)
def test_private_members_in_the_input_are_dropped(make_private_jwk):
    jwk = {**make_private_jwk(), "kid": "leaked"}
    assert "d" in jwk
    imported = import_jwks({"keys": [jwk]})
    key = imported.keys["leaked"].key
    assert key.is_private is False
    assert "d" not in key.as_dict(private=False)


@pytest.mark.parametrize(
    "make_jwk, reason",
    [
        pytest.param(lambda: rsa_jwk("small", bits=1024), "1024 bits", id="rsa-1024"),
        pytest.param(
            lambda: {**OKPKey.generate_key("X25519").as_dict(private=False), "kid": "x"}, "X25519", id="okp-x25519"
        ),
        pytest.param(lambda: ed25519("enc", use="enc"), "use", id="use-enc"),
        pytest.param(lambda: ed25519("ops", key_ops=["sign"]), "key_ops", id="key-ops-without-verify"),
        pytest.param(lambda: ed25519("ops", key_ops="verify"), "key_ops", id="key-ops-not-a-list"),
        pytest.param(lambda: rsa_jwk("mismatch", alg="ES256"), "ES256", id="es256-on-rsa"),
        pytest.param(lambda: ec("P-521", "mismatch", "ES256"), "ES256", id="es256-on-p521"),
        pytest.param(lambda: ec("P-256", "mismatch", "EdDSA"), "EdDSA", id="eddsa-on-p256"),
        pytest.param(lambda: ed25519("hs", alg="HS256"), "HS256", id="alg-hs256"),
        pytest.param(lambda: {k: v for k, v in ed25519().items() if k != "kid"}, "kid", id="kid-missing"),
        pytest.param(lambda: ed25519(kid=""), "kid", id="kid-empty"),
        pytest.param(lambda: ed25519(kid=42), "kid", id="kid-number"),
        pytest.param(lambda: ed25519(kid="k" * 257), "kid", id="kid-too-long"),
        pytest.param(lambda: ed25519("bad-x", x="!!!not base64!!!"), "bad-x", id="okp-bad-base64-x"),
        pytest.param(lambda: {k: v for k, v in rsa_jwk("no-n").items() if k != "n"}, "no-n", id="rsa-missing-n"),
        pytest.param(
            lambda: {k: v for k, v in ec("P-256", "no-y", None).items() if k != "y"}, "no-y", id="ec-missing-y"
        ),
        pytest.param(lambda: ec("P-256", "off-curve", None, x="AAAA", y="AAAA"), "off-curve", id="ec-point-off-curve"),
        pytest.param(lambda: ed25519("x-number", x=123), "x-number", id="okp-x-not-a-string"),
        pytest.param(lambda: "not an object", "object", id="entry-not-an-object"),
        pytest.param(lambda: {**ed25519("list-kty"), "kty": ["OKP"]}, "", id="kty-a-list"),
        pytest.param(lambda: {**ed25519("dict-kty"), "kty": {"OKP": 1}}, "", id="kty-an-object"),
    ],
)
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # joserfc's own note on small RSA keys
def test_unusable_key_is_skipped_with_reason_and_good_keys_stay(good_keys, make_jwk, reason):
    imported = import_jwks({"keys": [good_keys[0], make_jwk(), good_keys[3]]})
    assert list(imported.keys) == ["k-ed", "k-rsa"]
    assert len(imported.skipped) == 1, imported.skipped
    assert imported.skipped[0].startswith("key #1: ") and reason in imported.skipped[0], imported.skipped


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_rsa_key_below_2048_bits_is_skipped_with_reason():
    with pytest.raises(UnusableKey, match="1024 bits, at least 2048"):
        import_public_key(rsa_jwk("small", bits=1024))


def test_duplicate_kid_keeps_the_first_key_and_reports_the_second():
    first, second = ed25519("same"), ec("P-256", "same", "ES256")
    imported = import_jwks({"keys": [first, second]})
    assert list(imported.keys) == ["same"]
    assert imported.keys["same"].kty == "OKP"
    assert imported.keys["same"].key.as_dict(private=False)["x"] == first["x"]
    assert imported.skipped == ("key #1: duplicate kid 'same', keeping the first",)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param([], id="array"),
        pytest.param("keys", id="string"),
        pytest.param(None, id="null"),
        pytest.param({}, id="no-keys"),
        pytest.param({"keys": {"kid": "a"}}, id="keys-an-object"),
        pytest.param({"keys": "[]"}, id="keys-a-string"),
        pytest.param({"keys": None}, id="keys-null"),
    ],
)
def test_document_that_is_not_a_jwks_raises_not_a_jwks(document):
    with pytest.raises(JWKSError) as raised:
        import_jwks(document)
    assert raised.value.problem is JWKSProblem.NOT_A_JWKS


def test_empty_key_list_imports_nothing_without_error():
    imported = import_jwks({"keys": []})
    assert imported.keys == {} and imported.skipped == ()


def test_keys_beyond_max_keys_are_truncated_and_reported():
    one = ed25519()
    entries = [{**one, "kid": f"k{i}"} for i in range(MAX_KEYS + 5)]
    imported = import_jwks({"keys": entries})
    assert len(imported.keys) == MAX_KEYS
    assert f"k{MAX_KEYS - 1}" in imported.keys and f"k{MAX_KEYS}" not in imported.keys
    assert imported.skipped == (f"keys beyond the first {MAX_KEYS} ignored",)


def public_key(jwk: dict) -> PublicKey:
    key = import_public_key(jwk)
    assert key is not None
    return key


@pytest.mark.parametrize(
    "make_jwk, alg, accepted",
    [
        pytest.param(lambda: ed25519(), "EdDSA", True, id="eddsa-by-ed25519"),
        pytest.param(lambda: ed25519(), "Ed25519", True, id="ed25519-alg-name-by-ed25519-without-alg"),
        pytest.param(lambda: ed25519(), "ES256", False, id="es256-not-by-ed25519"),
        pytest.param(lambda: ec("P-256", "p", None), "ES256", True, id="es256-by-p256"),
        pytest.param(lambda: ec("P-521", "p", None), "ES256", False, id="es256-not-by-p521"),
        pytest.param(lambda: ec("P-521", "p", None), "ES512", True, id="es512-by-p521"),
        pytest.param(lambda: rsa_jwk(alg=None), "RS256", True, id="rs256-by-rsa-without-alg"),
        pytest.param(lambda: rsa_jwk(alg=None), "PS256", True, id="ps256-by-rsa-without-alg"),
        pytest.param(lambda: rsa_jwk(alg="PS256"), "RS256", False, id="rs256-not-by-rsa-with-alg-ps256"),
        pytest.param(lambda: rsa_jwk(alg="PS256"), "PS256", True, id="ps256-by-rsa-with-alg-ps256"),
        pytest.param(lambda: rsa_jwk(alg=None), "HS256", False, id="hs256-not-by-rsa"),
        pytest.param(lambda: ed25519(), "HS256", False, id="hs256-not-by-ed25519"),
        pytest.param(lambda: ec("P-256", "p", None), "none", False, id="none-not-by-p256"),
    ],
)
def test_accepts_only_algorithms_that_fit_the_key(make_jwk, alg, accepted):
    jwk = make_jwk()
    if alg == "Ed25519":
        jwk.pop("alg")
    assert public_key(jwk).accepts(alg) is accepted
