"""Configuration from the environment: safe production defaults, loud failure when a secret is
missing, strict parsing, ``*_FILE`` secrets, and the Redis switch.

Settings are evaluated once per process, so each configuration is loaded in a fresh Python
process with a clean environment (nothing inherited from the test run).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured

from api.env import env_bool, env_int, env_json, env_list, env_str
from api.settings import LOCAL_ORIGINS

ROOT = Path(__file__).resolve().parents[2]

SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "SECRET_KEY": s.SECRET_KEY,
    "HMAC_KEY": s.HMAC_KEY,
    "JWT_PRIVATE_KEY": s.JWT_PRIVATE_KEY,
    "FIELD_ENCRYPTION_KEYS": s.FIELD_ENCRYPTION_KEYS,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "CORS_ALLOWED_ORIGINS": s.CORS_ALLOWED_ORIGINS,
    "CORS_ALLOWED_ORIGIN_REGEXES": s.CORS_ALLOWED_ORIGIN_REGEXES,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SESSION_COOKIE_HTTPONLY": s.SESSION_COOKIE_HTTPONLY,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": s.SECURE_HSTS_INCLUDE_SUBDOMAINS,
    "SECURE_CONTENT_TYPE_NOSNIFF": s.SECURE_CONTENT_TYPE_NOSNIFF,
    "X_FRAME_OPTIONS": s.X_FRAME_OPTIONS,
    "EMAIL_BACKEND": s.EMAIL_BACKEND,
    "PASSWORD_HASHERS": s.PASSWORD_HASHERS,
    "DATABASE_ENGINE": s.DATABASES["default"]["ENGINE"],
    "DATABASE_NAME": str(s.DATABASES["default"]["NAME"]),
    "CACHE_BACKEND": s.CACHES["default"]["BACKEND"],
    "CACHE_LOCATION": s.CACHES["default"].get("LOCATION"),
    "CHANNEL_BACKEND": s.CHANNEL_LAYERS["default"]["BACKEND"],
    "CHANNEL_CONFIG": s.CHANNEL_LAYERS["default"].get("CONFIG"),
}))
"""


def clean_env(**values: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "api.settings", **values}


def ed25519_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def random_text() -> str:
    return base64.b64encode(os.urandom(40)).decode()


# Every secret production refuses to start without, with a fresh value of the right form.
SECRET_MAKERS = {
    "SECRET_KEY": random_text,
    "JWT_PRIVATE_KEY": ed25519_pem,
    "FIELD_ENCRYPTION_KEYS": lambda: json.dumps({"k1": base64.b64encode(os.urandom(32)).decode()}),
    "HMAC_KEY": random_text,
    "AUDIT_SIGNING_KEY": ed25519_pem,
}
REQUIRED_SECRETS = tuple(SECRET_MAKERS)


def production_secrets() -> dict[str, str]:
    return {name: make() for name, make in SECRET_MAKERS.items()} | {
        "FIELD_ENCRYPTION_KEY_ID": "k1"
    }


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load_settings(env: dict[str, str]) -> dict:
    result = run_python(SHOW_SETTINGS, env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def startup_error(env: dict[str, str]) -> str:
    result = run_python("import django; django.setup()", env)
    assert result.returncode != 0, "settings loaded, but they should have refused"
    assert "ImproperlyConfigured" in result.stderr
    return result.stderr.strip().splitlines()[-1]


# --- Production is the default ---------------------------------------------------------------


def env_reads() -> set[tuple[str, str]]:
    """(helper, variable) for every ``env_*("NAME", ...)`` call in api/settings.py."""
    tree = ast.parse((ROOT / "api" / "settings.py").read_text(encoding="utf-8"))
    return {
        (node.func.id, node.args[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id.startswith("env_")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_the_required_secrets_above_are_all_that_settings_require():
    required = {name for helper, name in env_reads() if helper == "env_required"}
    assert required | {"FIELD_ENCRYPTION_KEYS"} == set(REQUIRED_SECRETS)


def test_production_defaults_are_safe():
    loaded = load_settings(clean_env(**production_secrets()))
    assert loaded["DEBUG"] is False
    assert loaded["ALLOWED_HOSTS"] == []
    assert loaded["CORS_ALLOWED_ORIGINS"] == []
    assert loaded["CORS_ALLOWED_ORIGIN_REGEXES"] == []  # no page of another origin by default
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["CSRF_COOKIE_SECURE"] is True
    assert loaded["SESSION_COOKIE_HTTPONLY"] is True
    assert loaded["SECURE_SSL_REDIRECT"] is True
    assert loaded["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert loaded["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert loaded["X_FRAME_OPTIONS"] == "DENY"
    assert loaded["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert loaded["PASSWORD_HASHERS"][0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_production_passes_djangos_deployment_checklist():
    """``check --deploy`` on a complete production configuration: no errors, and the one
    security warning left is HSTS preload, an opt-in per domain."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=clean_env(
            **production_secrets(),
            ALLOWED_HOSTS="api.example.test",
            STRIPE_SECRET_KEY="sk_test_placeholder",
            STRIPE_WEBHOOK_SECRET="whsec_placeholder",
            STRIPE_PUBLISHABLE_KEY="pk_test_placeholder",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr  # no errors at all
    security = re.findall(r"\((security\.[WE]\d+)\)", result.stdout + result.stderr)
    assert set(security) <= {"security.W021"}


@pytest.mark.parametrize("missing", REQUIRED_SECRETS)
def test_a_missing_secret_stops_production_start_up(missing):
    env = clean_env(**production_secrets())
    del env[missing]
    assert f"{missing} must be set" in startup_error(env)


def test_nothing_configured_stops_production_start_up():
    assert "SECRET_KEY must be set" in startup_error(clean_env())


@pytest.mark.parametrize("missing", REQUIRED_SECRETS)
def test_an_empty_secret_counts_as_missing(missing):
    env = clean_env(**{**production_secrets(), missing: ""})
    assert f"{missing} must be set" in startup_error(env)


def test_debug_off_written_out_is_still_production():
    assert "SECRET_KEY must be set" in startup_error(clean_env(DJANGO_DEBUG="0"))


def test_the_current_field_key_id_must_name_a_configured_key():
    env = clean_env(**{**production_secrets(), "FIELD_ENCRYPTION_KEY_ID": "k2"})
    assert "FIELD_ENCRYPTION_KEY_ID" in startup_error(env)


def test_a_lost_process_limit_under_two_beats_stops_start_up():
    """One late beat must not make a live web process look dead (video/liveness.py)."""
    env = clean_env(
        DJANGO_DEBUG="1", VIDEO_PROCESS_BEAT_SECONDS="15", VIDEO_PROCESS_DEAD_SECONDS="29"
    )
    assert "VIDEO_PROCESS_DEAD_SECONDS must be at least twice" in startup_error(env)


@pytest.mark.parametrize("value", ["yes", "2"])  # the rest: test_env_bool_refuses_yes_ish_values
def test_a_yes_ish_django_debug_stops_start_up(value):
    assert "DJANGO_DEBUG must be one of" in startup_error(clean_env(DJANGO_DEBUG=value))


def test_debug_mode_runs_without_secrets_and_with_relaxed_transport():
    loaded = load_settings(clean_env(DJANGO_DEBUG="1"))
    assert loaded["DEBUG"] is True
    assert loaded["SECRET_KEY"].startswith("dev-only-")
    assert loaded["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost"]
    # `make run`: a web client's dev server on this machine (http://localhost:3000) may call it.
    assert loaded["CORS_ALLOWED_ORIGIN_REGEXES"] == [LOCAL_ORIGINS]
    assert loaded["SECURE_SSL_REDIRECT"] is False
    assert loaded["SECURE_HSTS_SECONDS"] == 0


# --- Secrets from files, data stores from URLs -----------------------------------------------


def test_secrets_can_come_from_files(tmp_path):
    secrets = production_secrets()
    env = clean_env(FIELD_ENCRYPTION_KEY_ID="k1")
    for name in REQUIRED_SECRETS:
        secret_file = tmp_path / name.lower()
        secret_file.write_text(secrets[name] + "\n", encoding="utf-8")
        env[f"{name}_FILE"] = str(secret_file)
    loaded = load_settings(env)
    assert loaded["SECRET_KEY"] == secrets["SECRET_KEY"]
    assert loaded["HMAC_KEY"] == secrets["HMAC_KEY"]
    assert loaded["JWT_PRIVATE_KEY"] == secrets["JWT_PRIVATE_KEY"].strip()
    assert loaded["FIELD_ENCRYPTION_KEYS"] == json.loads(secrets["FIELD_ENCRYPTION_KEYS"])


def test_without_redis_url_cache_and_channel_layer_are_in_memory():
    loaded = load_settings(clean_env(DJANGO_DEBUG="1"))
    assert loaded["CACHE_BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert loaded["CHANNEL_BACKEND"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["DATABASE_ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["DATABASE_NAME"] == str(ROOT / "db.sqlite3")


def test_redis_url_switches_cache_and_channel_layer_to_redis():
    url = "redis://127.0.0.1:6379/9"
    loaded = load_settings(clean_env(DJANGO_DEBUG="1", REDIS_URL=url))
    assert loaded["CACHE_BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert loaded["CACHE_LOCATION"] == url
    assert loaded["CHANNEL_BACKEND"] == "channels_redis.core.RedisChannelLayer"
    # A socket timeout above channels_redis's 5 s blocking pop (redis-py's default is 5 s).
    assert loaded["CHANNEL_CONFIG"]["hosts"] == [{"address": url, "socket_timeout": 15}]


def test_database_url_selects_postgresql():
    env = clean_env(DJANGO_DEBUG="1", DATABASE_URL="postgres://app@db.example.test:5432/tele")
    loaded = load_settings(env)
    assert loaded["DATABASE_ENGINE"] == "django.db.backends.postgresql"
    assert loaded["DATABASE_NAME"] == "tele"


# --- The helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("TRUE", True), (" on ", True), ("0", False), ("off", False)]
    + [("False", False), ("", False)],
)
def test_env_bool_accepts_only_explicit_values(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env_bool("SOME_FLAG") is expected


@pytest.mark.parametrize("raw", ["yes", "no", "y", "n", "2", "-1", "enabled", "tru"])
def test_env_bool_refuses_yes_ish_values(monkeypatch, raw):
    monkeypatch.setenv("SOME_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG must be one of"):
        env_bool("SOME_FLAG")


def test_env_bool_default_applies_only_when_unset(monkeypatch):
    monkeypatch.delenv("SOME_FLAG", raising=False)
    assert env_bool("SOME_FLAG", True) is True


def test_env_str_prefers_the_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv("SOME_SECRET", "from-env")
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret))
    assert env_str("SOME_SECRET") == "from-file"


def test_env_str_with_a_missing_file_fails_loudly(monkeypatch, tmp_path):
    monkeypatch.setenv("SOME_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError):
        env_str("SOME_SECRET")


def test_env_int_and_env_json_refuse_garbage(monkeypatch):
    monkeypatch.setenv("SOME_NUMBER", "ten")
    monkeypatch.setenv("SOME_JSON", "{not json")
    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER must be an integer"):
        env_int("SOME_NUMBER", 1)
    with pytest.raises(ImproperlyConfigured, match="SOME_JSON must be valid JSON"):
        env_json("SOME_JSON")


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("SOME_LIST", " a.example.test, ,b.example.test,")
    assert env_list("SOME_LIST") == ["a.example.test", "b.example.test"]


# --- Documentation stays in step ------------------------------------------------------------


def test_every_variable_is_in_env_example_and_the_readme():
    variables = {name for _, name in env_reads()}
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= variables
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    in_example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    in_readme = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", readme, flags=re.MULTILINE))
    assert sorted(variables - in_example) == [], "add these to .env.example"
    assert sorted(variables - in_readme) == [], "add these to the README's configuration table"
    assert sorted(in_example - variables) == [], "no longer read by api/settings.py"


def test_database_pool_switches_postgresql_to_psycopgs_pool():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "d = s.DATABASES['default']; print(d['CONN_MAX_AGE'], sorted(d['OPTIONS']['pool']))"
    )
    env = clean_env(
        DJANGO_DEBUG="1",
        DATABASE_URL="postgres://u@127.0.0.1:5432/x",
        DATABASE_CONN_MAX_AGE="60",
        DATABASE_POOL="1",
    )
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0 ['max_size', 'min_size', 'timeout']"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "None None []"),
        ({"DATABASE_PREPARED_STATEMENTS": "1"}, "True 5 []"),
        (
            {"DATABASE_PREPARED_STATEMENTS": "1", "DATABASE_POOL": "1"},
            "True 5 ['max_size', 'min_size', 'timeout']",
        ),
    ],
)
def test_database_prepared_statements_binds_server_side_and_prepares(extra, expected):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "o = s.DATABASES['default'].get('OPTIONS', {}); "
        "print(o.get('server_side_binding'), o.get('prepare_threshold'), sorted(o.get('pool', {})))"
    )
    env = clean_env(DJANGO_DEBUG="1", DATABASE_URL="postgres://u@127.0.0.1:5432/x", **extra)
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:3000", True),
        ("http://127.0.0.1:8080", True),
        ("https://evil.test", False),
    ],
)
def test_in_development_a_local_web_client_passes_the_cors_preflight(
    client, settings, origin: str, allowed: bool
):
    settings.CORS_ALLOWED_ORIGIN_REGEXES = [LOCAL_ORIGINS]
    response = client.options(
        "/api/v1/therapists/",
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert (response.get("Access-Control-Allow-Origin") == origin) is allowed
