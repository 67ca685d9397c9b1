"""service/settings.py: defaults, one error per bad variable, `.env` parsing and precedence, secrets
kept out of repr, and the docs generated from the declaration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service import settings_docs
from service.settings import DEFAULT_ALGORITHMS, Settings, SettingsError, load_settings, read_dotenv


@pytest.fixture
def no_dotenv(tmp_path: Path) -> Path:
    return tmp_path / "absent.env"


def write_dotenv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_with_empty_environment(no_dotenv):
    settings = load_settings(environ={}, dotenv=no_dotenv)
    assert settings == Settings()
    assert settings.better_auth_url == "http://localhost:3000"
    assert settings.jwks_url == "http://localhost:3000/api/auth/jwks"
    assert settings.jwt_issuer == settings.jwt_audience == "http://localhost:3000"
    assert settings.jwt_algorithms == DEFAULT_ALGORITHMS
    assert settings.database_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


@pytest.mark.parametrize(
    "base_url, expected",
    [
        pytest.param("https://app.example.com", "https://app.example.com", id="no-slash"),
        pytest.param("https://app.example.com/", "https://app.example.com", id="trailing-slash"),
        pytest.param("http://localhost:3001//", "http://localhost:3001", id="several-slashes"),
        pytest.param("  https://app.example.com/ ", "https://app.example.com", id="surrounding-spaces"),
    ],
)
def test_jwks_url_issuer_and_audience_derive_from_better_auth_url(no_dotenv, base_url, expected):
    settings = load_settings(environ={"BETTER_AUTH_URL": base_url}, dotenv=no_dotenv)
    assert settings.better_auth_url == expected
    assert settings.jwks_url == f"{expected}/api/auth/jwks"
    assert settings.jwt_issuer == expected
    assert settings.jwt_audience == expected


def test_explicit_jwks_url_issuer_and_audience_override_the_derived_ones(no_dotenv):
    settings = load_settings(
        environ={
            "BETTER_AUTH_URL": "https://app.example.com",
            "JWKS_URL": "https://keys.example.com/jwks.json",
            "JWT_ISSUER": "https://issuer.example.com",
            "JWT_AUDIENCE": "tasks-api",
        },
        dotenv=no_dotenv,
    )
    assert settings.jwks_url == "https://keys.example.com/jwks.json"
    assert (settings.jwt_issuer, settings.jwt_audience) == ("https://issuer.example.com", "tasks-api")


def test_values_are_parsed_to_their_types(no_dotenv):
    settings = load_settings(
        environ={
            "PORT": "9000",
            "JWKS_FETCH_TIMEOUT_SECONDS": "2.5",
            "JWT_ALGORITHMS": " ES256 , EdDSA,ES256 ",
            "LOG_LEVEL": "debug",
            "DATABASE_URL": "postgresql://u:p@db:5432/tasks",
            "DB_POOL_MIN_SIZE": "3",
            "DB_POOL_MAX_SIZE": "3",
        },
        dotenv=no_dotenv,
    )
    assert settings.port == 9000
    assert settings.jwks_fetch_timeout_seconds == 2.5
    assert settings.jwt_algorithms == ("ES256", "EdDSA")  # stripped, de-duplicated, order kept
    assert settings.log_level == "DEBUG"
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://u:p@db:5432/tasks"
    assert (settings.db_pool_min_size, settings.db_pool_max_size) == (3, 3)


def test_empty_value_keeps_the_default(no_dotenv):
    settings = load_settings(environ={"PORT": "", "LOG_LEVEL": "  ", "DATABASE_URL": ""}, dotenv=no_dotenv)
    assert (settings.port, settings.log_level, settings.database_url) == (8000, "INFO", None)


@pytest.mark.parametrize(
    "variable, value",
    [
        pytest.param("PORT", "abc", id="port-not-a-number"),
        pytest.param("PORT", "80.5", id="port-not-an-int"),
        pytest.param("PORT", "-1", id="port-negative"),
        pytest.param("PORT", "65536", id="port-too-large"),
        pytest.param("DB_POOL_MAX_SIZE", "0", id="pool-max-zero"),
        pytest.param("DB_POOL_MIN_SIZE", "-1", id="pool-min-negative"),
        pytest.param("JWKS_REFRESH_INTERVAL_SECONDS", "0", id="refresh-interval-zero"),
        pytest.param("JWKS_FETCH_TIMEOUT_SECONDS", "-5", id="timeout-negative"),
        pytest.param("JWKS_FETCH_TIMEOUT_SECONDS", "soon", id="timeout-not-a-number"),
        pytest.param("JWKS_FETCH_TIMEOUT_SECONDS", "nan", id="timeout-nan"),
        pytest.param("JWKS_MIN_REFETCH_INTERVAL_SECONDS", "nan", id="refetch-interval-nan"),
        pytest.param("JWKS_MAX_BYTES", "0", id="jwks-max-bytes-zero"),
        pytest.param("MAX_TOKEN_BYTES", "0", id="max-token-bytes-zero"),
        pytest.param("TOKEN_CACHE_MAX_ENTRIES", "-1", id="token-cache-negative"),
        pytest.param("IDEMPOTENCY_KEY_TTL_HOURS", "0", id="idempotency-ttl-zero"),
        pytest.param("JWT_LEEWAY_SECONDS", "1e3", id="leeway-not-an-int"),
        pytest.param("BETTER_AUTH_URL", "ftp://auth.example.com", id="base-url-ftp"),
        pytest.param("BETTER_AUTH_URL", "localhost:3000", id="base-url-no-scheme"),
        pytest.param("BETTER_AUTH_URL", "https://", id="base-url-no-host"),
        pytest.param("JWKS_URL", "file:///etc/jwks.json", id="jwks-url-file"),
        pytest.param("JWKS_URL", "/api/auth/jwks", id="jwks-url-relative"),
        pytest.param("DATABASE_URL", "mysql://u:p@db/tasks", id="database-url-mysql"),
        pytest.param("DATABASE_URL", "sqlite:///tasks.db", id="database-url-sqlite"),
        pytest.param("JWT_ALGORITHMS", "HS256", id="alg-hs256"),
        pytest.param("JWT_ALGORITHMS", "EdDSA,HS512", id="alg-hs512-among-good"),
        pytest.param("JWT_ALGORITHMS", "none", id="alg-none"),
        pytest.param("JWT_ALGORITHMS", "NONE", id="alg-none-uppercase"),
        pytest.param("JWT_ALGORITHMS", "ES256K", id="alg-unknown"),
        pytest.param("JWT_ALGORITHMS", " , ,", id="alg-empty-list"),
        pytest.param("LOG_LEVEL", "verbose", id="log-level-unknown"),
        pytest.param("DB_POOL_MIN_SIZE", "11", id="pool-min-above-default-max"),
        pytest.param("MAX_HEADER_BYTES", "2048", id="header-bytes-below-bound"),
        pytest.param("MAX_HEADER_BYTES", "9000", id="header-bytes-no-room-for-the-token"),
        pytest.param("HEADER_TIMEOUT_SECONDS", "0", id="header-timeout-zero"),
        pytest.param("MIN_BODY_BYTES_PER_SECOND", "0", id="body-rate-zero"),
        pytest.param("MAX_CONNECTIONS", "0", id="connections-zero"),
    ],
)
def test_invalid_value_raises_settings_error_naming_the_variable(no_dotenv, variable, value):
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={variable: value}, dotenv=no_dotenv)
    assert str(caught.value).startswith(f"{variable}:"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_pool_min_size_above_max_size_is_refused(no_dotenv):
    with pytest.raises(SettingsError, match=r"^DB_POOL_MIN_SIZE: .*DB_POOL_MAX_SIZE"):
        load_settings(environ={"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "4"}, dotenv=no_dotenv)


def test_settings_are_frozen(no_dotenv):
    settings = load_settings(environ={}, dotenv=no_dotenv)
    with pytest.raises(ValidationError, match="frozen"):
        settings.port = 1
    assert settings.port == 8000


def test_dotenv_values_are_used_and_the_environment_overrides_them(tmp_path):
    dotenv = write_dotenv(tmp_path, "PORT=9100\nLOG_LEVEL=warning\nHOST=0.0.0.0\n")
    settings = load_settings(environ={"PORT": "9200"}, dotenv=dotenv)
    assert settings.port == 9200  # environment wins
    assert settings.log_level == "WARNING"  # from .env
    assert settings.host == "0.0.0.0"


def test_invalid_value_in_dotenv_is_reported_like_one_from_the_environment(tmp_path):
    dotenv = write_dotenv(tmp_path, "PORT=eighty\n")
    with pytest.raises(SettingsError, match=r"^PORT: "):
        load_settings(environ={}, dotenv=dotenv)
    # ...but a valid environment value hides the bad .env one.
    assert load_settings(environ={"PORT": "81"}, dotenv=dotenv).port == 81


def test_missing_dotenv_file_reads_as_empty(tmp_path):
    assert read_dotenv(tmp_path / "nope.env") == {}


def test_dotenv_comments_quotes_and_export_lines_are_parsed(tmp_path):
    dotenv = write_dotenv(
        tmp_path,
        "# a comment line\n"
        "\n"
        "   # an indented comment\n"
        "PLAIN=value\n"
        "SPACED = spaced value \n"
        'DOUBLE="with # hash and spaces "\n'
        "SINGLE='single quoted'\n"
        "export EXPORTED=yes\n"
        "EMPTY=\n"
        "EQUALS=a=b=c\n"
        "MISMATCHED=\"half'\n",
    )
    assert read_dotenv(dotenv) == {
        "PLAIN": "value",
        "SPACED": "spaced value",
        "DOUBLE": "with # hash and spaces ",
        "SINGLE": "single quoted",
        "EXPORTED": "yes",
        "EMPTY": "",
        "EQUALS": "a=b=c",
        "MISMATCHED": "\"half'",
    }


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("JUST_A_WORD", id="no-equals"),
        pytest.param("=value", id="no-key"),
        pytest.param("BAD-KEY=1", id="key-not-identifier"),
        pytest.param("TWO WORDS=1", id="key-with-space"),
    ],
)
def test_malformed_dotenv_line_raises_naming_file_and_line(tmp_path, line):
    dotenv = write_dotenv(tmp_path, f"# header\nPORT=8000\n{line}\n")
    with pytest.raises(SettingsError) as caught:
        read_dotenv(dotenv)
    assert str(caught.value).startswith(".env:3:"), str(caught.value)
    with pytest.raises(SettingsError, match=r"^\.env:3:"):
        load_settings(environ={}, dotenv=dotenv)


def test_python_m_service_with_bad_variable_exits_with_one_line_naming_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PORT"] = "abc"
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=tmp_path,  # no .env here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == "configuration error: PORT: expected an integer, got 'abc'\n"


SECRET_DSN = "postgresql://tasks:s3cret-pw@db.internal:5432/tasks?sslpassword=key-pass"


def test_repr_and_str_never_show_the_database_url(no_dotenv):
    settings = load_settings(environ={"DATABASE_URL": SECRET_DSN}, dotenv=no_dotenv)
    for shown in (repr(settings), str(settings), repr(settings.model_dump())):
        assert "s3cret-pw" not in shown and "key-pass" not in shown, shown
    assert "database_url=SecretStr('**********')" in repr(settings)
    assert settings.database_url is not None and settings.database_url.get_secret_value() == SECRET_DSN


def test_a_refused_database_url_is_not_echoed_in_the_error(no_dotenv):
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"DATABASE_URL": SECRET_DSN.replace("postgresql", "mysql")}, dotenv=no_dotenv)
    assert str(caught.value) == "DATABASE_URL: expected a postgresql:// URL"


def test_lower_case_names_are_not_read(no_dotenv):
    assert load_settings(environ={"port": "9000", "Port": "9001"}, dotenv=no_dotenv).port == 8000


@pytest.mark.parametrize(
    "values, variable",
    [
        pytest.param({"port": 70000}, "PORT", id="port-too-large"),
        pytest.param({"jwt_algorithms": ("HS256",)}, "JWT_ALGORITHMS", id="symmetric-algorithm"),
        pytest.param({"db_pool_min_size": 5, "db_pool_max_size": 2}, "DB_POOL_MIN_SIZE", id="pool-bounds"),
    ],
)
def test_settings_built_in_code_are_validated_like_the_environment(values, variable):
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        Settings(**values)
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        Settings().replace(**values)


def test_replace_keeps_the_other_values_and_the_original():
    original = Settings(port=9000, database_url="postgresql://u:p@db/tasks")
    changed = original.replace(log_level="debug")
    assert (changed.port, changed.log_level, changed.database_url) == (9000, "DEBUG", original.database_url)
    assert original.log_level == "INFO"


def test_every_variable_has_a_description():
    assert all(field.description for field in Settings.model_fields.values())


def test_env_example_is_generated_from_the_declaration():
    assert settings_docs.ENV_EXAMPLE.read_text(encoding="utf-8") == settings_docs.env_example(), (
        ".env.example is out of date: run python -m service.settings_docs"
    )


def test_readme_configuration_table_is_generated_from_the_declaration():
    readme = settings_docs.README.read_text(encoding="utf-8")
    assert settings_docs.readme_with_table(readme) == readme, (
        "README.md's configuration table is out of date: run python -m service.settings_docs"
    )
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in readme


def test_env_example_used_as_dotenv_gives_the_defaults():
    assert load_settings(environ={}, dotenv=settings_docs.ENV_EXAMPLE) == Settings()


def test_a_changed_description_makes_the_generated_docs_differ(monkeypatch):
    field = Settings.model_fields["port"]
    monkeypatch.setattr(field, "description", "Another meaning.")
    assert "# Another meaning.\nPORT=8000\n" in settings_docs.env_example()
    assert settings_docs.env_example() != settings_docs.ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "| `PORT` | `8000` | 0\N{EN DASH}65535 | Another meaning. |" in settings_docs.readme_table()
