"""Key pairs and compact JWS signing, as Better Auth's jwt() plugin makes them."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

_KEY_FACTORIES: dict[str, Callable[[], Any]] = {
    "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
    "ES256": lambda: ECKey.generate_key("P-256"),
    "ES384": lambda: ECKey.generate_key("P-384"),
    "ES512": lambda: ECKey.generate_key("P-521"),
    "RS256": lambda: RSAKey.generate_key(2048),
    "PS256": lambda: RSAKey.generate_key(2048),
}
SUPPORTED_TEST_ALGORITHMS = tuple(_KEY_FACTORIES)
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_kid() -> str:
    """A 32-character random id, as Better Auth's generateId() makes for each key."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(32))


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any  # a joserfc key holding the private part

    @classmethod
    def generate(cls, alg: str) -> SigningKey:
        if alg not in _KEY_FACTORIES:
            raise ValueError(f"unsupported algorithm {alg!r}; one of {', '.join(_KEY_FACTORIES)}")
        return cls(kid=new_kid(), alg=alg, private=_KEY_FACTORIES[alg]())

    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry Better Auth publishes: the public members plus alg and kid, no `use`."""
        return {"alg": self.alg, **self.private.as_dict(private=False), "kid": self.kid}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_compact(header: dict[str, Any], payload: bytes | str, key: Any, alg: str) -> str:
    """Sign a JWS with exactly `header`, as given: no `typ` added and no header checks, so tests
    can also make tokens a careful issuer never would (`crit`, `b64`, `jku`, ...)."""
    data = payload.encode() if isinstance(payload, str) else payload
    signing_input = f"{b64url(json.dumps(header, separators=(',', ':')).encode())}.{b64url(data)}"
    signature = JWSRegistry.algorithms[alg].sign(signing_input.encode("ascii"), key)
    return f"{signing_input}.{b64url(signature)}"


def sign_claims(
    key: SigningKey, claims: dict[str, Any], *, typ: str | None = None, header: dict[str, Any] | None = None
) -> str:
    """A token signed by `key`. The header is Better Auth's ({typ?, alg, kid}, in jose's order);
    `header` overrides or adds members, so tests can also forge one."""
    protected = {**({"typ": typ} if typ else {}), "alg": key.alg, "kid": key.kid, **(header or {})}
    return sign_compact(protected, json.dumps(claims, separators=(",", ":")), key.private, key.alg)
