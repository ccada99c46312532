"""Loaded with ``-p tests._env`` before Django starts: the test run's environment.

Tests use the development keys (DJANGO_DEBUG=1 only selects them; Django's test runner still
runs with DEBUG off), SQLite unless DATABASE_URL is set, and in-memory layers unless REDIS_URL is.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings")
# Billing's tests talk to Stripe doubles; the development gateway's own tests select it.
os.environ.setdefault("BILLING_GATEWAY", "stripe")
# After-commit tasks run inline, where they are sent (tests of real workers turn this off).
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")

# Each xdist worker gets its own Redis database: tests clear the cache (FLUSHDB), and the cache
# and channel layer of one worker must not be wiped by another's (gw0 → the URL's db, gw1 → +1).
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_redis = os.environ.get("REDIS_URL")
if _redis and _worker.startswith("gw"):
    from urllib.parse import urlsplit, urlunsplit

    _parts = urlsplit(_redis)
    _base = int(_parts.path.lstrip("/") or 0)
    _db = _base + int(_worker[2:])
    os.environ["REDIS_URL"] = urlunsplit(_parts._replace(path=f"/{_db}"))
