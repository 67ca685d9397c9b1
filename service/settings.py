"""Configuration: read once at start from the environment (and `.env`), frozen afterwards.

`Settings` is the one declaration of every variable: type, bounds, default and description.
`.env.example` and the README's table are generated from it (service/settings_docs.py). Every bad
value raises `SettingsError` with one line naming the variable, so start-up fails clearly.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from annotated_types import Ge, Le
from pydantic import BeforeValidator, Field, FiniteFloat, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_BETTER_AUTH_URL = "http://localhost:3000"
DEFAULT_ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")
# Asymmetric algorithms we can verify. HS* and "none" are never accepted: Better Auth has no
# shared-secret mode, and a symmetric allow-list would let anyone holding the JWKS sign tokens.
SUPPORTED_ALGORITHMS = frozenset(
    {"EdDSA", "Ed25519", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_INTEGER = re.compile(r"[+-]?[0-9]+")


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def _integer_text(value: object) -> object:
    # pydantic would read "80.0" and "1_000"; in a config file those are more likely typos.
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _number_text(value: object) -> object:
    if isinstance(value, str) and "_" in value:
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _comma_list(value: object) -> object:
    return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value


Int = Annotated[int, BeforeValidator(_integer_text)]
Float = Annotated[FiniteFloat, BeforeValidator(_number_text)]
# Comma-separated in the environment (NoDecode: not JSON, as pydantic-settings would expect).
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]


def _section(title: str) -> Any:
    """Marks the first variable of a group in the generated `.env.example`."""
    return {"section": title}


def _documented(default_doc: str, example: str | None = None) -> Any:
    """What the docs say for a default that is not a literal (derived, or unset), and an example."""
    return {"default_doc": default_doc, **({"example": example} if example else {})}


class Settings(BaseSettings):
    """Every variable the service reads. `Settings(**values)` uses only the given values and the
    defaults; `load_settings()` reads the environment and `.env`."""

    model_config = SettingsConfigDict(frozen=True, hide_input_in_errors=True, validate_default=True)

    # -- Better Auth (the Next.js host) --
    better_auth_url: str = Field(
        DEFAULT_BETTER_AUTH_URL,
        description="Origin of the Next.js app running Better Auth with the jwt() plugin.",
        json_schema_extra=_section("Better Auth (the Next.js host)"),
    )
    jwks_url: str = Field(
        "",
        description="Where the public keys are fetched (redirects are not followed).",
        json_schema_extra=_documented("`{BETTER_AUTH_URL}/api/auth/jwks`", f"{DEFAULT_BETTER_AUTH_URL}/api/auth/jwks"),
    )
    jwt_issuer: str = Field(
        "",
        description="Accepted `iss` values, comma-separated (e.g. a public and an internal URL).",
        json_schema_extra=_documented(
            "origin of `BETTER_AUTH_URL` (with OAUTH_ACCESS_TOKENS: also `OAUTH_AUTHORIZATION_SERVER`)",
            f"{DEFAULT_BETTER_AUTH_URL},{DEFAULT_BETTER_AUTH_URL}/api/auth",
        ),
    )
    jwt_audience: str = Field(
        "",
        description="Accepted `aud` values, comma-separated; a token must name at least one.",
        json_schema_extra=_documented(
            "origin of `BETTER_AUTH_URL` (with OAUTH_ACCESS_TOKENS: also `OAUTH_RESOURCE`)", DEFAULT_BETTER_AUTH_URL
        ),
    )
    jwt_algorithms: CommaList = Field(
        DEFAULT_ALGORITHMS,
        description="Allow-list of signature algorithms, comma-separated; HS* and none are refused.",
    )
    jwt_leeway_seconds: Int = Field(
        30, ge=0, le=300, description="Clock skew tolerated on exp, nbf and iat, in seconds."
    )
    max_token_bytes: Int = Field(8192, ge=512, le=65536, description="Longest Bearer token accepted, in bytes.")
    jwt_max_lifetime_seconds: Int = Field(
        86400,
        ge=60,
        le=366 * 86400,
        description="Longest lifetime (`exp` - `iat`) a token may claim, in seconds; longer ones are refused.",
    )

    # -- OAuth access tokens --
    oauth_access_tokens: bool = Field(
        False,
        description=(
            "Also accept @better-auth/oauth-provider access tokens (typ at+jwt); they need scope"
            " tasks:read (GET, HEAD) or tasks:write (the rest)."
        ),
        json_schema_extra=_section("OAuth access tokens (@better-auth/oauth-provider)"),
    )
    oauth_resource: str = Field(
        "",
        description=(
            "This service's public URL: the `resource` clients request and the `aud` of their tokens;"
            " required with OAUTH_ACCESS_TOKENS."
        ),
        json_schema_extra=_documented("unset", "https://tasks.example.com"),
    )
    oauth_authorization_server: str = Field(
        "",
        description="The issuer that grants tokens, in /.well-known/oauth-protected-resource.",
        json_schema_extra=_documented("`{BETTER_AUTH_URL}/api/auth`", f"{DEFAULT_BETTER_AUTH_URL}/api/auth"),
    )

    # -- Sign-out --
    session_check: Literal["off", "http"] = Field(
        "off",
        description=(
            "off: tokens are trusted until exp; http: each token's `sid` is checked at SESSION_CHECK_URL"
            " (cached SESSION_CHECK_CACHE_SECONDS)."
        ),
        json_schema_extra=_section("Sign-out (session check)"),
    )
    session_check_url: str = Field(
        "",
        description="The session-status endpoint (the sessionStatus plugin in the README).",
        json_schema_extra=_documented(
            "`{BETTER_AUTH_URL}/api/auth/session-status`", f"{DEFAULT_BETTER_AUTH_URL}/api/auth/session-status"
        ),
    )
    session_check_secret: SecretStr | None = Field(
        None,
        description="Shared secret sent as a Bearer token to SESSION_CHECK_URL; required with SESSION_CHECK=http.",
        json_schema_extra=_documented("unset", "a-long-random-string"),
    )
    session_check_cache_seconds: Float = Field(
        5.0, ge=0, le=300, description="How long an answer about a session is reused, in seconds."
    )
    session_check_timeout_seconds: Float = Field(
        2.0, ge=0.05, le=30, description="Deadline of one session check, in seconds."
    )
    session_check_on_error: Literal["closed", "open"] = Field(
        "closed",
        description="When the check cannot be made: closed refuses the request (503), open lets it through.",
    )

    # -- Key cache --
    jwks_fetch_timeout_seconds: Float = Field(
        5.0,
        ge=0.1,
        le=60,
        description="Total deadline of one JWKS fetch, in seconds.",
        json_schema_extra=_section("Key cache"),
    )
    jwks_max_bytes: Int = Field(256 * 1024, ge=1024, description="Largest JWKS body accepted, in bytes.")
    jwks_refresh_interval_seconds: Float = Field(
        300.0, ge=1, description="Background refresh period, in seconds: routine fetches never delay a request."
    )
    jwks_min_refetch_interval_seconds: Float = Field(
        5.0,
        ge=0,
        le=600,
        description="Least time between two fetches for unknown kids, from the last attempt, in seconds.",
    )
    jwks_max_staleness_seconds: Float = Field(
        24 * 3600.0, ge=1, description="How long the last good keys serve while the JWKS host fails, in seconds."
    )
    jwks_max_retry_after_seconds: Float = Field(
        300.0,
        ge=1,
        le=3600,
        description="Longest X-Retry-After / Retry-After of a 429 or 503 from the JWKS host that is honoured, in seconds.",
    )
    jwks_file: Path | None = Field(
        None,
        description="Read the keys from this JWKS file instead of JWKS_URL; reloaded when it changes.",
        json_schema_extra=_documented("unset (keys fetched from JWKS_URL)", "/etc/tasks/jwks.json"),
    )
    jwks_file_poll_seconds: Float = Field(
        2.0, ge=0.1, le=3600, description="How often JWKS_FILE is checked for a change (mtime, size), in seconds."
    )
    token_cache_max_entries: Int = Field(
        10_000, ge=0, description="Verified tokens remembered until their exp (0: no cache)."
    )

    # -- Database --
    database_url: SecretStr | None = Field(
        None,
        description="A postgresql:// DSN (libpq sslmode honoured); unset: an embedded PostgreSQL runs with the service.",
        json_schema_extra={
            **_section("Database"),
            **_documented(
                "unset (embedded PostgreSQL)", "postgresql://tasks:secret@db.example.com:5432/tasks?sslmode=require"
            ),
        },
    )
    embedded_pg_data_dir: Path = Field(
        default_factory=lambda: REPO_ROOT / ".data" / "postgres",
        description="Data folder of the embedded server, kept across restarts.",
        json_schema_extra=_documented("`.data/postgres` in the repository", ".data/postgres"),
    )
    db_pool_min_size: Int = Field(1, ge=0, le=1000, description="Connections the pool keeps open, per worker process.")
    db_pool_max_size: Int = Field(10, ge=1, le=1000, description="Most connections the pool opens, per worker process.")
    db_pool_acquire_timeout_seconds: Float = Field(
        2.0, ge=0.01, le=60, description="How long a request waits for a free connection before a 503, in seconds."
    )
    db_statement_timeout_ms: Int = Field(
        5000,
        ge=0,
        description="Time limit of each request's statements, in milliseconds (0: none): statement_timeout in a"
        " transaction; for a one-round-trip statement, the client cancels it.",
    )
    db_statement_cache_size: Int = Field(
        100,
        ge=0,
        le=100_000,
        description="asyncpg's prepared-statement cache; 0 behind pgbouncer in transaction mode (Neon, Supabase poolers).",
    )

    database_listen_url: SecretStr | None = Field(
        None,
        description="DSN of each process's one LISTEN connection for live updates; it needs a session, so behind "
        "pgbouncer in transaction mode point it at PostgreSQL itself.",
        json_schema_extra=_documented(
            "`DATABASE_URL` (or the embedded PostgreSQL)", "postgresql://tasks:secret@db.example.com:5432/tasks"
        ),
    )

    # -- HTTP --
    host: str = Field("127.0.0.1", min_length=1, description="Listen address.", json_schema_extra=_section("HTTP"))
    port: Int = Field(8000, ge=0, le=65535, description="Listen port.")
    workers: Int = Field(
        1, ge=1, le=256, description="Server processes, each with its own pool and key cache; /metrics sums them all."
    )
    shutdown_timeout_seconds: Float = Field(
        20.0, ge=0, le=600, description="After SIGTERM, how long in-flight requests may finish, in seconds."
    )
    cors_origins: CommaList = Field(
        (),
        description="Browser origins allowed to call the API directly, comma-separated; empty: no CORS headers.",
        json_schema_extra=_documented("empty (no CORS)", "https://app.example.com"),
    )
    trusted_proxies: str = Field(
        "",
        description="IPs or networks whose X-Forwarded-For is believed for client addresses in logs, comma-separated.",
        json_schema_extra=_documented("empty", "10.0.0.0/8"),
    )
    max_body_bytes: Int = Field(
        16 * 1024, ge=256, le=10 * 1024 * 1024, description="Largest request body accepted, in bytes (413 beyond)."
    )
    max_header_bytes: Int = Field(
        16 * 1024,
        ge=4096,
        le=128 * 1024,
        description="Largest request line and headers accepted, in bytes (431 beyond).",
    )
    header_timeout_seconds: Float = Field(
        10.0,
        ge=0.1,
        le=60,
        description="Time to send the request line and headers, in seconds (408 and closed beyond); also the"
        " grace period before a body's upload rate is checked.",
    )
    min_body_bytes_per_second: Int = Field(
        1024, ge=1, le=10 * 1024 * 1024, description="Slowest average body upload accepted, in bytes/s (cut below)."
    )
    max_connections: Int = Field(
        1000, ge=1, le=100_000, description="Requests served at once per process (503 with Retry-After beyond)."
    )
    idempotency_key_ttl_hours: Int = Field(
        24, ge=1, le=24 * 365, description="How long an Idempotency-Key is remembered, in hours."
    )
    idempotency_sweep_interval_seconds: Float = Field(
        300.0, ge=1, le=86400, description="How often expired Idempotency-Keys of every user are deleted, in seconds."
    )
    max_tasks_per_user: Int = Field(
        10_000, ge=1, le=10_000_000, description="Most tasks one user may hold (409 task_limit_reached beyond)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR."
    )
    log_format: Literal["json", "text"] = Field("json", description="json (one object per line) or text.")
    access_log: bool = Field(
        True, description="One log line per request: request id, method, route, status, duration, hashed user id."
    )

    # -- Sync and live updates --
    sync_retention_days: Int = Field(
        30,
        ge=1,
        le=3650,
        description="How long deletes stay in the change feed, in days; older sync tokens get 410.",
        json_schema_extra=_section("Sync and live updates"),
    )
    event_streams_max: Int = Field(
        1000, ge=1, le=100_000, description="Open event streams per process (503 + Retry-After beyond)."
    )
    event_streams_per_user: Int = Field(
        5, ge=1, le=1000, description="Open event streams of one user, per process (503 + Retry-After beyond)."
    )
    event_heartbeat_seconds: Float = Field(
        15.0, ge=1, le=300, description="Interval of the comment line an idle event stream sends, in seconds."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the caller passes: the environment is read by load_settings, and only there.
        return (init_settings,)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed, validated like the original."""
        return type(self)(**{**{name: getattr(self, name) for name in type(self).model_fields}, **changes})

    @model_validator(mode="before")
    @classmethod
    def _derive_from_better_auth_url(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        base = str(data.get("better_auth_url") or DEFAULT_BETTER_AUTH_URL).strip().rstrip("/")
        origin = origin_of(base)
        authorization_server = str(data.get("oauth_authorization_server") or f"{base}/api/auth")
        issuers, audiences = [origin], [origin]
        if _truthy(data.get("oauth_access_tokens")):
            # Better Auth's OAuth provider puts its baseURL (with the basePath) in `iss`, and the
            # requested resource in `aud`.
            issuers.append(authorization_server)
            audiences.append(str(data.get("oauth_resource") or "").strip())
        derived = {
            "jwks_url": f"{base}/api/auth/jwks",
            "jwt_issuer": ",".join(dict.fromkeys(filter(None, issuers))),
            "jwt_audience": ",".join(dict.fromkeys(filter(None, audiences))),
            "oauth_authorization_server": authorization_server,
            "session_check_url": f"{base}/api/auth/session-status",
        }
        return {**data, **{name: value for name, value in derived.items() if not data.get(name)}}

    @property
    def jwt_issuers(self) -> tuple[str, ...]:
        return _split(self.jwt_issuer)

    @property
    def jwt_audiences(self) -> tuple[str, ...]:
        return _split(self.jwt_audience)

    @field_validator("jwt_issuer", "jwt_audience")
    @classmethod
    def _claim_values(cls, value: str) -> str:
        values = _split(value)
        if not values:
            raise ValueError("at least one value is required")
        return ",".join(values)

    @field_validator("oauth_resource", "oauth_authorization_server")
    @classmethod
    def _optional_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment):
            raise ValueError(f"expected an http(s) URL without fragment, got {value!r}")
        return value

    @field_validator("better_auth_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"expected an http(s) URL without query, got {value!r}")
        return value.rstrip("/")

    @field_validator("jwks_url", "session_check_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        algorithms = tuple(dict.fromkeys(value))
        if not algorithms:
            raise ValueError("at least one algorithm is required")
        for alg in algorithms:
            if alg.upper().startswith("HS") or alg.lower() == "none":
                raise ValueError(f"{alg} is refused (only asymmetric algorithms are verified)")
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"unknown algorithm {alg!r}; supported: {', '.join(sorted(SUPPORTED_ALGORITHMS))}")
        return algorithms

    @field_validator("database_url", "database_listen_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in ("postgres", "postgresql"):
            raise ValueError("expected a postgresql:// URL")  # never echo it: it may hold a password
        return value

    @field_validator("embedded_pg_data_dir")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        if not str(value):
            raise ValueError("must not be empty")
        return value.resolve()

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        origins = tuple(origin.rstrip("/") for origin in value)
        for origin in origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return origins

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network") from None
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _case(cls, value: object, info: Any) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE: must not exceed DB_POOL_MAX_SIZE")
        if self.jwks_max_staleness_seconds < self.jwks_refresh_interval_seconds:
            raise ValueError("JWKS_MAX_STALENESS_SECONDS: must be at least JWKS_REFRESH_INTERVAL_SECONDS")
        if self.max_header_bytes < self.max_token_bytes + 2048:
            raise ValueError("MAX_HEADER_BYTES: must be at least MAX_TOKEN_BYTES + 2048")
        if self.oauth_access_tokens and not self.oauth_resource:
            raise ValueError("OAUTH_RESOURCE: required with OAUTH_ACCESS_TOKENS=true (this service's public URL)")
        if self.session_check == "http" and self.session_check_secret is None:
            raise ValueError("SESSION_CHECK_SECRET: required with SESSION_CHECK=http")
        return self


def _split(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


def _truthy(value: object) -> bool:
    """A boolean as pydantic reads it, for deriving defaults before validation."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "t", "y")
    return value is True


def origin_of(url: str) -> str:
    """scheme://host[:port], what Better Auth puts in `iss` and `aud`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def variable_of(field: str) -> str:
    return field.upper()


def _bounds(field: str) -> str:
    metadata = Settings.model_fields[field].metadata
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    return f"between {low} and {high}" if high is not None else f">= {low}"


def _one_line(exc: ValidationError) -> str:
    """The first error, as `VARIABLE: what is wrong, got 'value'`."""
    error: ErrorDetails = exc.errors(include_url=False)[0]
    if not error["loc"]:  # a rule across fields: its message names the variable
        return str(error.get("ctx", {}).get("error", error["msg"]))
    field = str(error["loc"][0])
    shown = "" if field in ("database_url", "session_check_secret") else f", got {error['input']!r}"
    kind = error["type"]
    if kind == "value_error":
        message = str(error.get("ctx", {}).get("error", error["msg"]))
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        message = f"expected an integer{shown}"
    elif kind in ("float_parsing", "float_type"):
        message = f"expected a number{shown}"
    elif kind == "finite_number":
        message = f"must be a finite number{shown}"
    elif kind in ("greater_than_equal", "less_than_equal"):
        message = f"must be {_bounds(field)}{shown}"
    elif kind == "bool_parsing":
        message = f"expected true or false{shown}"
    elif kind == "literal_error":
        message = f"expected {error.get('ctx', {}).get('expected', 'another value')}{shown}"
    else:
        message = f"{error['msg'][0].lower()}{error['msg'][1:]}{shown}"
    return f"{variable_of(field)}: {message}"


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' environment source, over one mapping (the environment above `.env`)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Upper-case names only, as documented: a stray lower-case `port` is not ours. Empty: unset.
        return {name.lower(): value for name, value in self._environ.items() if name.isupper() and value}


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Build Settings from the process environment, with `.env` values underneath it. Surrounding
    spaces are dropped; an empty value keeps the default."""
    env = dict(read_dotenv(dotenv if dotenv is not None else Path.cwd() / ".env"))
    env.update(os.environ if environ is None else environ)
    stripped = {name: value.strip() for name, value in env.items()}
    return Settings(_build_sources=((_EnvironmentSource(Settings, stripped),), {}))


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal `.env`: KEY=VALUE lines, `#` comments, optional matching quotes. Stricter than
    python-dotenv on purpose: a malformed line stops start-up, naming the file and line."""
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
