"""Configuration: read once at start from the environment (and `.env`), frozen afterwards.

Every bad value raises `SettingsError` naming the variable, so start-up fails with one line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_BETTER_AUTH_URL = "http://localhost:3000"
DEFAULT_ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")
# Asymmetric algorithms we can verify. HS* and "none" are never accepted: Better Auth has no
# shared-secret mode, and a symmetric allow-list would let anyone holding the JWKS sign tokens.
SUPPORTED_ALGORITHMS = frozenset(
    {"EdDSA", "Ed25519", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    better_auth_url: str = DEFAULT_BETTER_AUTH_URL
    jwks_url: str = f"{DEFAULT_BETTER_AUTH_URL}/api/auth/jwks"
    jwt_issuer: str = DEFAULT_BETTER_AUTH_URL
    jwt_audience: str = DEFAULT_BETTER_AUTH_URL
    jwt_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jwt_leeway_seconds: int = 30
    max_token_bytes: int = 8192

    jwks_fetch_timeout_seconds: float = 5.0
    jwks_max_bytes: int = 256 * 1024
    jwks_refresh_interval_seconds: float = 300.0
    jwks_min_refetch_interval_seconds: float = 5.0
    jwks_max_staleness_seconds: float = 24 * 3600.0
    token_cache_max_entries: int = 10_000

    database_url: str | None = None
    embedded_pg_data_dir: Path = field(default_factory=lambda: REPO_ROOT / ".data" / "postgres")
    db_pool_min_size: int = 1
    db_pool_max_size: int = 10
    db_pool_acquire_timeout_seconds: float = 2.0
    db_statement_timeout_ms: int = 5000
    db_statement_cache_size: int = 100

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 16 * 1024
    # HTTP limits per connection (see service.server), and connections served at once per process.
    max_header_bytes: int = 16 * 1024
    header_timeout_seconds: float = 10.0
    min_body_bytes_per_second: int = 1024
    max_connections: int = 1000
    idempotency_key_ttl_hours: int = 24
    shutdown_timeout_seconds: float = 20.0
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: str = ""
    log_level: str = "INFO"
    log_format: str = "json"
    access_log: bool = True


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal `.env`: KEY=VALUE lines, `#` comments, optional matching quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SettingsError(f"{path.name}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()  # an inline comment after an unquoted value
        values[key.strip()] = value
    return values


def _base_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SettingsError(f"{name}: expected an http(s) URL without query, got {value!r}")
    return value.rstrip("/")


def origin_of(url: str) -> str:
    """scheme://host[:port], what Better Auth puts in `iss` and `aud`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _http_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name}: expected an http(s) URL, got {value!r}")
    return value


def _algorithms(name: str, value: str) -> tuple[str, ...]:
    algorithms = tuple(dict.fromkeys(a.strip() for a in value.split(",") if a.strip()))
    if not algorithms:
        raise SettingsError(f"{name}: at least one algorithm is required")
    for alg in algorithms:
        if alg.upper().startswith("HS") or alg.lower() == "none":
            raise SettingsError(f"{name}: {alg} is refused (only asymmetric algorithms are verified)")
        if alg not in SUPPORTED_ALGORITHMS:
            raise SettingsError(
                f"{name}: unknown algorithm {alg!r}; supported: {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
            )
    return algorithms


def _number(kind: Callable[[str], T], minimum: float, maximum: float | None = None) -> Callable[[str, str], T]:
    def parse(name: str, value: str) -> T:
        noun = "an integer" if kind is int else "a number"
        try:
            if "_" in value:  # Python would read 1_000; in a config file it is more likely a typo
                raise ValueError
            number = kind(value)
        except ValueError:
            raise SettingsError(f"{name}: expected {noun}, got {value!r}") from None
        if not math.isfinite(number):
            raise SettingsError(f"{name}: must be a finite number, got {value!r}")
        if number < minimum or (maximum is not None and number > maximum):  # type: ignore[operator]
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise SettingsError(f"{name}: must be {bound}, got {value!r}")
        return number

    return parse


def _database_url(name: str, value: str) -> str:
    if urlsplit(value).scheme not in ("postgres", "postgresql"):
        raise SettingsError(f"{name}: expected a postgresql:// URL")
    return value


def _log_level(name: str, value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{name}: expected DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level


def _log_format(name: str, value: str) -> str:
    if value.lower() not in ("json", "text"):
        raise SettingsError(f"{name}: expected json or text, got {value!r}")
    return value.lower()


def _boolean(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {value!r}")


def _origins(name: str, value: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise SettingsError(f"{name}: {origin!r} is not an origin like https://app.example.com")
    return origins


def _networks(name: str, value: str) -> str:
    import ipaddress

    for part in value.split(","):
        if part.strip():
            try:
                ipaddress.ip_network(part.strip(), strict=False)
            except ValueError:
                raise SettingsError(f"{name}: {part.strip()!r} is not an IP address or network") from None
    return value


def _text(name: str, value: str) -> str:
    if not value:
        raise SettingsError(f"{name}: must not be empty")
    return value


# variable -> (field, parser). Order matters only for error messages.
_PARSERS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "JWT_ALGORITHMS": ("jwt_algorithms", _algorithms),
    "JWT_LEEWAY_SECONDS": ("jwt_leeway_seconds", _number(int, 0, 300)),
    "MAX_TOKEN_BYTES": ("max_token_bytes", _number(int, 512, 65536)),
    "JWKS_FETCH_TIMEOUT_SECONDS": ("jwks_fetch_timeout_seconds", _number(float, 0.1, 60)),
    "JWKS_MAX_BYTES": ("jwks_max_bytes", _number(int, 1024)),
    "JWKS_REFRESH_INTERVAL_SECONDS": ("jwks_refresh_interval_seconds", _number(float, 1)),
    "JWKS_MIN_REFETCH_INTERVAL_SECONDS": ("jwks_min_refetch_interval_seconds", _number(float, 0, 600)),
    "JWKS_MAX_STALENESS_SECONDS": ("jwks_max_staleness_seconds", _number(float, 1)),
    "TOKEN_CACHE_MAX_ENTRIES": ("token_cache_max_entries", _number(int, 0)),
    "DATABASE_URL": ("database_url", _database_url),
    "EMBEDDED_PG_DATA_DIR": ("embedded_pg_data_dir", lambda name, value: Path(_text(name, value)).resolve()),
    "DB_POOL_MIN_SIZE": ("db_pool_min_size", _number(int, 0, 1000)),
    "DB_POOL_MAX_SIZE": ("db_pool_max_size", _number(int, 1, 1000)),
    "DB_POOL_ACQUIRE_TIMEOUT_SECONDS": ("db_pool_acquire_timeout_seconds", _number(float, 0.01, 60)),
    "DB_STATEMENT_TIMEOUT_MS": ("db_statement_timeout_ms", _number(int, 0)),
    "DB_STATEMENT_CACHE_SIZE": ("db_statement_cache_size", _number(int, 0, 100_000)),
    "HOST": ("host", _text),
    "PORT": ("port", _number(int, 0, 65535)),
    "WORKERS": ("workers", _number(int, 1, 256)),
    "MAX_BODY_BYTES": ("max_body_bytes", _number(int, 256, 10 * 1024 * 1024)),
    "MAX_HEADER_BYTES": ("max_header_bytes", _number(int, 4096, 128 * 1024)),
    "HEADER_TIMEOUT_SECONDS": ("header_timeout_seconds", _number(float, 0.1, 60)),
    "MIN_BODY_BYTES_PER_SECOND": ("min_body_bytes_per_second", _number(int, 1, 10 * 1024 * 1024)),
    "MAX_CONNECTIONS": ("max_connections", _number(int, 1, 100_000)),
    "IDEMPOTENCY_KEY_TTL_HOURS": ("idempotency_key_ttl_hours", _number(int, 1, 24 * 365)),
    "SHUTDOWN_TIMEOUT_SECONDS": ("shutdown_timeout_seconds", _number(float, 0, 600)),
    "CORS_ORIGINS": ("cors_origins", _origins),
    "TRUSTED_PROXIES": ("trusted_proxies", _networks),
    "LOG_LEVEL": ("log_level", _log_level),
    "LOG_FORMAT": ("log_format", _log_format),
    "ACCESS_LOG": ("access_log", _boolean),
}


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Build Settings from the process environment, with `.env` values underneath it."""
    env = dict(read_dotenv(dotenv if dotenv is not None else Path.cwd() / ".env"))
    env.update(os.environ if environ is None else environ)
    env = {k: v.strip() for k, v in env.items()}

    base = _base_url("BETTER_AUTH_URL", env.get("BETTER_AUTH_URL") or DEFAULT_BETTER_AUTH_URL)
    values: dict[str, object] = {
        "better_auth_url": base,
        "jwks_url": _http_url("JWKS_URL", env.get("JWKS_URL") or f"{base}/api/auth/jwks"),
        "jwt_issuer": env.get("JWT_ISSUER") or origin_of(base),
        "jwt_audience": env.get("JWT_AUDIENCE") or origin_of(base),
    }
    for variable, (name, parse) in _PARSERS.items():
        raw = env.get(variable)
        if raw:  # unset or empty: keep the default
            values[name] = parse(variable, raw)

    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.db_pool_min_size > settings.db_pool_max_size:
        raise SettingsError("DB_POOL_MIN_SIZE: must not exceed DB_POOL_MAX_SIZE")
    if settings.jwks_max_staleness_seconds < settings.jwks_refresh_interval_seconds:
        raise SettingsError("JWKS_MAX_STALENESS_SECONDS: must be at least JWKS_REFRESH_INTERVAL_SECONDS")
    if settings.max_header_bytes < settings.max_token_bytes + 2048:  # the token and the other headers
        raise SettingsError("MAX_HEADER_BYTES: must be at least MAX_TOKEN_BYTES + 2048")
    return settings
