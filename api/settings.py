"""One settings module, driven by the environment (see ``.env.example`` for every variable).

Production is the default: DEBUG is off, cookies are secure, HSTS is on, and a missing secret
stops the process. ``make run`` turns the developer conveniences on explicitly
(``DJANGO_DEBUG=1``), which also allows the development keys below.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import dj_database_url
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured

from api.env import env_bool, env_int, env_json, env_list, env_required, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
PRODUCTION = not DEBUG

SECRET_KEY = env_required(
    "SECRET_KEY",
    when=PRODUCTION,
    dev_default="dev-only-insecure-secret-key-never-use-in-production",
)


def _dev_material(label: str) -> bytes:
    """32 deterministic bytes for development only (never reached with DEBUG off)."""
    return hashlib.sha256(f"telehealth-dev:{label}".encode()).digest()


ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
# Development (`make run`): a web client served from this machine on any port (a dev server on
# http://localhost:3000) may call the API and open its sockets; production names its origins.
LOCAL_ORIGINS = r"^http://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$"
CORS_ALLOWED_ORIGIN_REGEXES = [LOCAL_ORIGINS] if DEBUG else []
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-request-id",
)
CORS_EXPOSE_HEADERS = ("x-request-id", "idempotency-replayed")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_otp",
    "api",
    "audit",
    "scheduling",
    "billing",
    "video",
    "messaging",
]

MIDDLEWARE = [
    "api.middleware.RequestIdMiddleware",
    "api.metrics.MetricsMiddleware",
    "api.middleware.ApiProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "api.middleware.NoStoreMiddleware",
]

ROOT_URLCONF = "api.urls"
ASGI_APPLICATION = "api.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "api" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores -----------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_POOL", False
):
    # psycopg's connection pool (Django >= 5.1): connections are reused across requests, also
    # under ASGI where persistent per-thread connections (CONN_MAX_AGE) are not returned.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 10),
            "timeout": env_int("DATABASE_POOL_TIMEOUT_SECONDS", 10),
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_PREPARED_STATEMENTS", False
):
    # Server-side binding and prepared statements on each connection (Django leaves both off
    # for transaction poolers such as PgBouncer before 1.21): a statement run a few times on a
    # connection (psycopg's default ``prepare_threshold``) is then parsed and planned once and
    # executed by name with its parameters (docs/concurrency.md, "Benchmark").
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "telehealth"),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # channels_redis blocks 5 s on a pop while a channel is empty; redis-py's default
                # socket timeout is 5 s too, so an idle receive could time out: give it room.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "prefix": env_str("CHANNEL_LAYER_PREFIX", "telehealth"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Identity ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "api.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 8},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_MAX_LENGTH = 1024

JWT_ISSUER = env_str("JWT_ISSUER", "urn:telehealth:api") or "urn:telehealth:api"
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "urn:telehealth:clients") or "urn:telehealth:clients"
JWT_ALGORITHM = "EdDSA"  # pinned: never taken from a token's header
JWT_KEY_ID = env_str("JWT_KEY_ID", "dev-1") or "dev-1"
JWT_PRIVATE_KEY = env_required(
    "JWT_PRIVATE_KEY",
    when=PRODUCTION,
    dev_default=Ed25519PrivateKey.from_private_bytes(_dev_material("jwt"))
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode(),
)
# Public keys of earlier signing keys that still verify during a rotation: {"kid": "PEM", ...}.
JWT_PREVIOUS_PUBLIC_KEYS: dict[str, str] = env_json("JWT_PREVIOUS_PUBLIC_KEYS", {}) or {}
JWT_ACCESS_TTL_SECONDS = env_int("JWT_ACCESS_TTL_SECONDS", 300)
JWT_REFRESH_TTL_SECONDS = env_int("JWT_REFRESH_TTL_SECONDS", 30 * 60)  # idle timeout
JWT_FAMILY_MAX_AGE_SECONDS = env_int("JWT_FAMILY_MAX_AGE_SECONDS", 12 * 3600)  # absolute
JWT_MFA_PENDING_TTL_SECONDS = env_int("JWT_MFA_PENDING_TTL_SECONDS", 300)
JWT_LEEWAY_SECONDS = 30
JWT_MAX_TOKEN_BYTES = 4096
# How recent a login must be for sensitive account changes (MFA enrolment, removal).
REAUTH_MAX_AGE_SECONDS = env_int("REAUTH_MAX_AGE_SECONDS", 600)

# Field-level encryption (TOTP secrets, notes and other PHI): separate from SECRET_KEY.
# {"key-id": "<base64 of 32 bytes>", ...}; FIELD_ENCRYPTION_KEY_ID names the one new writes use.
FIELD_ENCRYPTION_KEYS: dict[str, str] = env_json("FIELD_ENCRYPTION_KEYS", None) or (
    {} if PRODUCTION else {"dev-1": base64.b64encode(_dev_material("field-encryption")).decode()}
)
FIELD_ENCRYPTION_KEY_ID = env_str("FIELD_ENCRYPTION_KEY_ID", "dev-1") or "dev-1"
# Keyed hashing (backup codes, blind indexes): separate from both keys above.
HMAC_KEY = env_required(
    "HMAC_KEY", when=PRODUCTION, dev_default=base64.b64encode(_dev_material("hmac")).decode()
)
if PRODUCTION and not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set in production.")
if FIELD_ENCRYPTION_KEY_ID not in FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY_ID must name one of FIELD_ENCRYPTION_KEYS.")

# Brute-force limits (counted atomically in the cache and on the user row).
LOGIN_MAX_FAILURES_BEFORE_BACKOFF = env_int("LOGIN_MAX_FAILURES_BEFORE_BACKOFF", 5)
LOGIN_BACKOFF_MAX_SECONDS = env_int("LOGIN_BACKOFF_MAX_SECONDS", 15 * 60)
RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE = env_int("RATE_LIMIT_LOGIN_PER_IP_PER_MINUTE", 30)
RATE_LIMIT_MFA_PER_IP_PER_MINUTE = env_int("RATE_LIMIT_MFA_PER_IP_PER_MINUTE", 30)
RATE_LIMIT_REFRESH_PER_IP_PER_MINUTE = env_int("RATE_LIMIT_REFRESH_PER_IP_PER_MINUTE", 60)
RATE_LIMIT_REGISTER_PER_IP_PER_HOUR = env_int("RATE_LIMIT_REGISTER_PER_IP_PER_HOUR", 20)
RATE_LIMIT_PASSWORD_RESET_PER_IP_PER_HOUR = env_int("RATE_LIMIT_PASSWORD_RESET_PER_IP_PER_HOUR", 20)
# Reset emails sent to one address per hour (more requests are answered alike but send nothing).
PASSWORD_RESET_EMAILS_PER_ADDRESS_PER_HOUR = env_int(
    "PASSWORD_RESET_EMAILS_PER_ADDRESS_PER_HOUR", 3
)

# Proxies whose X-Forwarded-For entries are believed, right-most first (IPs or CIDRs).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])

# --- Audit trail (docs/audit.md) --------------------------------------------------------------
# Signs chain heads and export manifests (Ed25519 PEM); separate from the JWT key.
AUDIT_SIGNING_KEY = env_required(
    "AUDIT_SIGNING_KEY",
    when=PRODUCTION,
    dev_default=Ed25519PrivateKey.from_private_bytes(_dev_material("audit-signing"))
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode(),
)
AUDIT_SIGNING_KEY_ID = env_str("AUDIT_SIGNING_KEY_ID", "audit-dev-1") or "audit-dev-1"
# Public keys of earlier audit signing keys, so old heads and exports still verify: {"kid": "PEM"}.
AUDIT_PREVIOUS_PUBLIC_KEYS: dict[str, str] = env_json("AUDIT_PREVIOUS_PUBLIC_KEYS", {}) or {}
# How long events are kept before they may be archived (HIPAA: six years).
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 6 * 366)
# Compliance officers read the trail only within this long after signing in (with MFA).
AUDIT_REVIEW_MAX_AUTH_AGE_SECONDS = env_int("AUDIT_REVIEW_MAX_AUTH_AGE_SECONDS", 15 * 60)
# An event sealed longer than this after it happened is reported by audit_verify as back-dated.
AUDIT_SEAL_MAX_LAG_SECONDS = env_int("AUDIT_SEAL_MAX_LAG_SECONDS", 24 * 3600)

# --- Video (docs/video.md) -------------------------------------------------------------------
# A confirmed booking's room opens this long before the session and closes this long after it.
VIDEO_ROOM_OPENS_MINUTES_BEFORE = env_int("VIDEO_ROOM_OPENS_MINUTES_BEFORE", 10)
VIDEO_ROOM_GRACE_MINUTES = env_int("VIDEO_ROOM_GRACE_MINUTES", 15)
# Room tokens: signed with the JWT keyring, for this audience, short-lived (and never past the
# room's window).
VIDEO_TOKEN_AUDIENCE = env_str("VIDEO_TOKEN_AUDIENCE", "urn:telehealth:video") or (
    "urn:telehealth:video"
)
VIDEO_TOKEN_TTL_SECONDS = env_int("VIDEO_TOKEN_TTL_SECONDS", 300)
# A participant whose socket dropped keeps its place this long (the resume token).
VIDEO_RESUME_SECONDS = env_int("VIDEO_RESUME_SECONDS", 60)
# Lost web processes (video/liveness.py): a process serving video sockets beats every
# VIDEO_PROCESS_BEAT_SECONDS; one silent for VIDEO_PROCESS_DEAD_SECONDS is taken for dead and
# its participants detached as of its last beat (the video_lost_processes job).
VIDEO_PROCESS_BEAT_SECONDS = env_int("VIDEO_PROCESS_BEAT_SECONDS", 15)
VIDEO_PROCESS_DEAD_SECONDS = env_int("VIDEO_PROCESS_DEAD_SECONDS", 60)
if VIDEO_PROCESS_DEAD_SECONDS < 2 * VIDEO_PROCESS_BEAT_SECONDS:
    raise ImproperlyConfigured(
        "VIDEO_PROCESS_DEAD_SECONDS must be at least twice VIDEO_PROCESS_BEAT_SECONDS."
    )
# ICE servers handed out at join. TURN credentials are minted per join from the shared secret
# of coturn's `use-auth-secret` (TURN REST); the secret never leaves the server.
VIDEO_STUN_URLS = env_list("VIDEO_STUN_URLS")
VIDEO_TURN_URLS = env_list("VIDEO_TURN_URLS")
VIDEO_TURN_SECRET = env_str("VIDEO_TURN_SECRET", "") or ""
if VIDEO_TURN_URLS and not VIDEO_TURN_SECRET:
    raise ImproperlyConfigured("VIDEO_TURN_URLS needs VIDEO_TURN_SECRET (or its _FILE).")
# Signalling limits, per connection.
VIDEO_SIGNAL_MAX_FRAME_BYTES = env_int("VIDEO_SIGNAL_MAX_FRAME_BYTES", 64 * 1024)
VIDEO_SDP_MAX_BYTES = env_int("VIDEO_SDP_MAX_BYTES", 32 * 1024)
VIDEO_SIGNAL_RATE_PER_SECOND = env_int("VIDEO_SIGNAL_RATE_PER_SECOND", 20)
VIDEO_SIGNAL_BURST = env_int("VIDEO_SIGNAL_BURST", 60)
VIDEO_HELLO_TIMEOUT_SECONDS = env_int("VIDEO_HELLO_TIMEOUT_SECONDS", 10)
# Waiting-room notes from a client to the therapist: longest note, and one per this many seconds.
VIDEO_WAITING_NOTE_MAX_CHARS = env_int("VIDEO_WAITING_NOTE_MAX_CHARS", 280)
VIDEO_WAITING_NOTE_INTERVAL_SECONDS = env_int("VIDEO_WAITING_NOTE_INTERVAL_SECONDS", 30)
# Call quality (video/quality.py): clients send `stats` every VIDEO_STATS_INTERVAL_SECONDS; one
# sooner than VIDEO_STATS_MIN_SECONDS after the last is refused (rate_limited).
VIDEO_STATS_INTERVAL_SECONDS = env_int("VIDEO_STATS_INTERVAL_SECONDS", 10)
VIDEO_STATS_MIN_SECONDS = env_int("VIDEO_STATS_MIN_SECONDS", 5)
# Waking a backgrounded mobile app (video/wake.py): the dotted path of a callable taking a
# video.wake.Wake (user, room, "admitted" or "therapist_ready"), e.g. a push to APNs or FCM.
VIDEO_WAKE_HOOK = env_str("VIDEO_WAKE_HOOK", "") or ""
# Attendance (docs/video.md): someone not in the room by the start + this many minutes has not
# come (the client's no-show may be marked; the therapist's is recorded by video_no_shows), and
# a session with less attended time than this many seconds was not held (it cannot be completed).
VIDEO_NO_SHOW_MINUTES = env_int("VIDEO_NO_SHOW_MINUTES", 15)
VIDEO_ATTENDED_MIN_SECONDS = env_int("VIDEO_ATTENDED_MIN_SECONDS", 60)
# The pre-call test (video/precall/): an echo peer in a media worker. "inprocess" runs it in the
# web process (make run); "channels" sends each test to `manage.py run_media_worker` processes
# through the channel layer (needs REDIS_URL). Per worker: at most VIDEO_PRECALL_MAX_TESTS at
# once, video capped at WIDTHxHEIGHT and FPS, each test at most VIDEO_PRECALL_MAX_SECONDS.
VIDEO_PRECALL_MEDIA_WORKER = env_str("VIDEO_PRECALL_MEDIA_WORKER", "inprocess") or "inprocess"
if VIDEO_PRECALL_MEDIA_WORKER not in ("inprocess", "channels"):
    raise ImproperlyConfigured("VIDEO_PRECALL_MEDIA_WORKER must be inprocess or channels.")
if VIDEO_PRECALL_MEDIA_WORKER == "channels" and not REDIS_URL:
    raise ImproperlyConfigured("VIDEO_PRECALL_MEDIA_WORKER=channels needs REDIS_URL.")
VIDEO_PRECALL_MAX_TESTS = env_int("VIDEO_PRECALL_MAX_TESTS", 12)
VIDEO_PRECALL_WIDTH = env_int("VIDEO_PRECALL_WIDTH", 320)
VIDEO_PRECALL_HEIGHT = env_int("VIDEO_PRECALL_HEIGHT", 240)
VIDEO_PRECALL_FPS = env_int("VIDEO_PRECALL_FPS", 15)
VIDEO_PRECALL_SECONDS = env_int("VIDEO_PRECALL_SECONDS", 15)
VIDEO_PRECALL_MAX_SECONDS = env_int("VIDEO_PRECALL_MAX_SECONDS", 30)
# A test whose media has not connected this long after the answer is ended (its slot freed).
VIDEO_PRECALL_CONNECT_SECONDS = env_int("VIDEO_PRECALL_CONNECT_SECONDS", 10)
# How long a pre-call token may wait before its offer; how long an offer waits for a free worker.
VIDEO_PRECALL_TOKEN_TTL_SECONDS = env_int("VIDEO_PRECALL_TOKEN_TTL_SECONDS", 120)
VIDEO_PRECALL_QUEUE_SECONDS = env_int("VIDEO_PRECALL_QUEUE_SECONDS", 3)

# --- Messaging (docs/messaging.md) -----------------------------------------------------------
# Longest message (characters) and longest closing note.
MESSAGING_MAX_MESSAGE_CHARS = env_int("MESSAGING_MAX_MESSAGE_CHARS", 10_000)
MESSAGING_MAX_NOTE_CHARS = env_int("MESSAGING_MAX_NOTE_CHARS", 2_000)
# Attachments (MSG-03): the largest file, and where files go: Django's storage API, local files
# under MESSAGING_ATTACHMENTS_DIR by default, or any backend (django-storages' S3Storage on many
# machines) named by MESSAGING_ATTACHMENT_STORAGE, {"BACKEND": "...", "OPTIONS": {...}}.
MESSAGING_ATTACHMENT_MAX_BYTES = env_int("MESSAGING_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
MESSAGING_ATTACHMENTS_DIR = env_str("MESSAGING_ATTACHMENTS_DIR") or str(
    BASE_DIR / "var" / "attachments"
)
MESSAGING_ATTACHMENT_STORAGE = env_json("MESSAGING_ATTACHMENT_STORAGE", None) or {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": MESSAGING_ATTACHMENTS_DIR},
}
# Notifications (MSG-05): how long the newest unread message waits before its recipient is
# emailed (one email for everything waiting); MESSAGING_PUSH_HOOK, a dotted path to a callable
# taking (user_id=, kind=), is told too (mobile push; no content is ever passed).
MESSAGING_NOTIFY_DELAY_SECONDS = env_int("MESSAGING_NOTIFY_DELAY_SECONDS", 5 * 60)
MESSAGING_PUSH_HOOK = env_str("MESSAGING_PUSH_HOOK", "") or ""
# Shown when a conversation opens: messaging is not for emergencies, and the crisis line of the
# client's jurisdiction (ISO 3166-2 first, then its country; "default" otherwise).
MESSAGING_CRISIS_LINES: dict[str, str] = env_json("MESSAGING_CRISIS_LINES", None) or {
    "US": "Call or text 988 (988 Suicide & Crisis Lifeline), or call 911.",
    "CA": "Call or text 988 (9-8-8 Suicide Crisis Helpline), or call 911.",
    "GB": "Call 111 (NHS, option 2 for mental health) or Samaritans on 116 123, or call 999.",
    "IE": "Call Samaritans on 116 123, or call 112 or 999.",
    "AU": "Call Lifeline on 13 11 14, or call 000.",
    "default": "Call your local emergency number or go to the nearest emergency department.",
}
# Records policy: messages (with their versions and attachments) of a conversation whose last
# activity is older than this many days are erased by `manage.py messaging_retention`.
MESSAGING_RETENTION_DAYS = env_int("MESSAGING_RETENTION_DAYS", 7 * 366)
# Attachment files no row names (a send rolled back after storing its file, or crashed) are
# deleted by the daily `messaging_orphan_files` job once this many seconds old: longer than any
# send's transaction, so a file whose row is not committed yet is never taken.
MESSAGING_ORPHAN_GRACE_SECONDS = env_int("MESSAGING_ORPHAN_GRACE_SECONDS", 60 * 60)

# --- REST conventions -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.IsAuthenticatedWithMFA"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "api.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_THROTTLE_CLASSES": [],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Telehealth API",
    "DESCRIPTION": "Therapist directory, booking, payments, video sessions and audit trail.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "BookingStatusEnum": "scheduling.models.BookingStatus",
        "FeeRequestKindEnum": "scheduling.models.FeeRequestKind",
        "MessageKindEnum": "messaging.models.MessageKind",
        "OverrideKindEnum": "scheduling.models.OverrideKind",
        "PaymentStateEnum": "billing.states.ApiState",
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)
JSON_MAX_DEPTH = 32

# --- Security headers -------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER", False) else None
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Email ------------------------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "no-reply@telehealth.invalid")
# Where django.core.mail.backends.filebased.EmailBackend writes (a test reads what was sent).
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", "") or None
# An email that still fails this long after it was queued is given up (logged, removed).
EMAIL_GIVE_UP_HOURS = env_int("EMAIL_GIVE_UP_HOURS", 24)

# --- Billing (Stripe) -------------------------------------------------------------------------
# Empty keys leave billing off: the gateway refuses to call Stripe and the webhook endpoint
# refuses every delivery (fail closed); `manage.py check --deploy` reports them missing.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "") or ""
# Given to the apps with each payment (/pay) to initialise Stripe's SDK; not a secret.
STRIPE_PUBLISHABLE_KEY = env_str("STRIPE_PUBLISHABLE_KEY", "") or ""
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "") or ""
STRIPE_LIVEMODE = env_bool("STRIPE_LIVEMODE", False)  # events of the other mode are ignored
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com") or "https://api.stripe.com"
STRIPE_CONNECT_TIMEOUT_SECONDS = env_int("STRIPE_CONNECT_TIMEOUT_SECONDS", 5)
STRIPE_READ_TIMEOUT_SECONDS = env_int("STRIPE_READ_TIMEOUT_SECONDS", 20)
STRIPE_MAX_RETRIES = env_int("STRIPE_MAX_RETRIES", 2)  # after the first attempt, same key
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300)
STRIPE_WEBHOOK_MAX_BYTES = env_int("STRIPE_WEBHOOK_MAX_BYTES", 256 * 1024)


def billing_gateway_choose(*, requested: str, debug: bool, stripe_secret_key: str) -> str:
    """Which gateway billing uses: ``stripe``, or ``dev`` (billing/gateways/dev.py: Stripe's
    test mode played locally, for ``make run`` without a Stripe account). Unset, it is ``dev``
    exactly when DEBUG is on and no Stripe key is set. The development gateway can never run
    with DEBUG off: asking for it then stops the process."""
    choice = requested or ("dev" if debug and not stripe_secret_key else "stripe")
    if choice not in ("stripe", "dev"):
        raise ImproperlyConfigured("BILLING_GATEWAY must be 'stripe' or 'dev'.")
    if choice == "dev" and not debug:
        raise ImproperlyConfigured(
            "The development payment gateway cannot be used with DEBUG off: set "
            "STRIPE_SECRET_KEY (and BILLING_GATEWAY=stripe) in production."
        )
    if choice == "dev" and stripe_secret_key:
        raise ImproperlyConfigured("BILLING_GATEWAY=dev and STRIPE_SECRET_KEY: choose one.")
    return choice


BILLING_GATEWAY = billing_gateway_choose(
    requested=env_str("BILLING_GATEWAY", "") or "",
    debug=DEBUG,
    stripe_secret_key=STRIPE_SECRET_KEY,
)
if BILLING_GATEWAY == "dev":
    # Clearly fake keys: the apps get a publishable key that no Stripe account has, and the dev
    # gateway signs its events with this secret, which the real webhook path verifies.
    STRIPE_PUBLISHABLE_KEY = STRIPE_PUBLISHABLE_KEY or "pk_test_dev_local_gateway_not_a_stripe_key"
    STRIPE_WEBHOOK_SECRET = (
        STRIPE_WEBHOOK_SECRET or f"whsec_dev_{_dev_material('stripe-webhook').hex()}"
    )
# Development gateway: deliver its events right after the transaction that caused them commits
# (off: only `manage.py dev_gateway_deliver`, or `dev_pay`, delivers them).
BILLING_DEV_EVENTS_AFTER_COMMIT = env_bool("BILLING_DEV_EVENTS_AFTER_COMMIT", True)
# Stripe Connect payouts to therapists (separate charges and transfers), off by default.
BILLING_CONNECT_ENABLED = env_bool("BILLING_CONNECT_ENABLED", False)
BILLING_PLATFORM_FEE_BPS = env_int("BILLING_PLATFORM_FEE_BPS", 1500)  # 15.00 %, in basis points
# Fees charged off-session to a saved card: how many attempts, and how far apart.
BILLING_FEE_MAX_ATTEMPTS = env_int("BILLING_FEE_MAX_ATTEMPTS", 3)
BILLING_FEE_RETRY_HOURS = env_int("BILLING_FEE_RETRY_HOURS", 24)

# --- Scheduling -------------------------------------------------------------------------------
# Networks that calendar URLs may resolve to although not public (SSRF guard); empty in
# production, ["127.0.0.1/32"] in tests that serve a calendar from a loopback server.
CALENDAR_FETCH_ALLOWED_NETWORKS = env_list("CALENDAR_FETCH_ALLOWED_NETWORKS", [])
CALENDAR_FETCH_TIMEOUT_SECONDS = env_int("CALENDAR_FETCH_TIMEOUT_SECONDS", 10)
CALENDAR_MAX_BYTES = env_int("CALENDAR_MAX_BYTES", 512 * 1024)
CALENDAR_SYNC_INTERVAL_MINUTES = env_int("CALENDAR_SYNC_INTERVAL_MINUTES", 30)
CALENDAR_UID_DOMAIN = env_str("CALENDAR_UID_DOMAIN", "telehealth.invalid") or "telehealth.invalid"

# Bookings (scheduling/bookings): how long a hold keeps a slot while the client pays, the
# longest recurring series, and whether booking emails are sent by the web process right after
# commit (the `make run` default) or only by `manage.py send_reminders`, which a worker or cron
# runs every minute (the production default: no SMTP round trip inside a request).
BOOKING_HOLD_MINUTES = env_int("BOOKING_HOLD_MINUTES", 15)
BOOKING_SERIES_MAX_OCCURRENCES = env_int("BOOKING_SERIES_MAX_OCCURRENCES", 12)
BOOKING_EMAILS_AFTER_COMMIT = env_bool("BOOKING_EMAILS_AFTER_COMMIT", DEBUG)
# How long before a session its two reminders are due (a test shortens them).
BOOKING_REMINDER_FIRST_SECONDS = env_int("BOOKING_REMINDER_FIRST_SECONDS", 24 * 3600)
BOOKING_REMINDER_LAST_SECONDS = env_int("BOOKING_REMINDER_LAST_SECONDS", 3600)
if not 0 < BOOKING_REMINDER_LAST_SECONDS < BOOKING_REMINDER_FIRST_SECONDS:
    raise ImproperlyConfigured(
        "BOOKING_REMINDER_LAST_SECONDS must be positive and less than "
        "BOOKING_REMINDER_FIRST_SECONDS."
    )

# --- Jobs (Celery: api/celery.py, api/jobs.py) -----------------------------------------------
# The broker: CELERY_BROKER_URL, else Redis when REDIS_URL is set (keys under their own
# prefix), else the filesystem transport in JOBS_DIR, which needs no server (`make run`).
# Results are not kept: a job's outcome is its JobRun row (`manage.py jobs_status`).
JOBS_DIR = Path(env_str("JOBS_DIR") or BASE_DIR / "var" / "jobs")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem:"):
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(JOBS_DIR / "queue"),
        "data_folder_out": str(JOBS_DIR / "queue"),
        "control_folder": str(JOBS_DIR / "control"),
        "polling_interval": 0.2,  # seconds between looks at an empty queue folder
    }
elif CELERY_BROKER_URL.startswith(("redis:", "rediss:")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "global_keyprefix": env_str("CELERY_KEY_PREFIX", "telehealth-jobs:") or "telehealth-jobs:"
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True  # a job whose worker died is run again (every job is idempotent)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # LOGGING below (its redacting filter) applies
CELERY_TIMEZONE = "UTC"
# Run each task where it is sent, at once (the test suite: after-commit work then happens inside
# the test, as it did before it became tasks). Never in a deployment: nothing reaches a worker.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(JOBS_DIR / "beat-schedule")
# How often the every-minute jobs run (a test shortens it); the others as below.
JOBS_FREQUENT_SECONDS = env_int("JOBS_FREQUENT_SECONDS", 60)


def _every(seconds: float) -> dict[str, object]:
    # A run that waited longer than its interval in the queue is dropped: the next one is due.
    return {"schedule": seconds, "options": {"expires": seconds}}


CELERY_BEAT_SCHEDULE = {
    name: {"task": name, **_every(interval)}
    for name, interval in {
        "audit_seal": JOBS_FREQUENT_SECONDS,
        "send_reminders": JOBS_FREQUENT_SECONDS,
        "send_emails": JOBS_FREQUENT_SECONDS,
        "billing_settle": JOBS_FREQUENT_SECONDS,
        "refresh_availability": JOBS_FREQUENT_SECONDS,
        "video_no_shows": JOBS_FREQUENT_SECONDS,
        "video_completions": JOBS_FREQUENT_SECONDS,
        "video_lost_processes": JOBS_FREQUENT_SECONDS,
        "send_message_notifications": JOBS_FREQUENT_SECONDS,
        "sync_calendars": CALENDAR_SYNC_INTERVAL_MINUTES * 60,
        "expire_holds": 15 * 60,
        "audit_checkpoint": 60 * 60,
        "messaging_retention": 24 * 60 * 60,
        "messaging_orphan_files": 24 * 60 * 60,
    }.items()
}

# --- Misc -------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The second step's back-off (1, 2, 4 … s after successive wrong codes) and its cap.
OTP_TOTP_THROTTLE_FACTOR = env_int("OTP_TOTP_THROTTLE_FACTOR", 1)
MFA_BACKOFF_MAX_SECONDS = env_int("MFA_BACKOFF_MAX_SECONDS", 15 * 60)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Telehealth")

# --- Observability (docs/architecture.md, "Observability") -----------------------------------
# Log lines: "json" (one object per line, the production default) or "text" (development).
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
# Bearer token Prometheus sends to scrape /metrics. Unset: /metrics is a 404 in production and,
# in development, open to this machine (loopback) only.
METRICS_TOKEN = env_str("METRICS_TOKEN", "") or ""
# Several web processes: the directory where prometheus-client's multiprocess mode keeps each
# process's samples (read by prometheus-client itself; empty it before the processes start).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", "") or ""
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured("PROMETHEUS_MULTIPROC_DIR must name an existing directory.")

_LOG_HANDLER = {
    "class": "logging.StreamHandler",
    "formatter": LOG_FORMAT,
    "filters": ["redact", "request_id"],
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "api.logging.RedactingFilter"},
        "request_id": {"()": "api.logging.RequestIdFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "api.logging.JsonFormatter"},
    },
    "handlers": {"console": _LOG_HANDLER},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's request logger prints paths and exception text; ours are redacted.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # uvicorn's own loggers (startup, errors, the access log with its raw paths) through the
        # same handler: redacted, and in the same format.
        "uvicorn": {
            "handlers": ["console"],
            "level": env_str("LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "uvicorn.access": {
            "handlers": ["console"],
            "level": env_str("LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
}
