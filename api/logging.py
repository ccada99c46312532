"""Log hygiene: no tokens, secrets, emails, UUIDs or control characters reach a log line;
each line carries the request id; ``LOG_FORMAT=json`` writes one JSON object per line."""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The request being served (set by api.middleware.RequestIdMiddleware); "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.?[A-Za-z0-9\-_.+/=]*")
_JWT = re.compile(r"eyJ[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_.+/=]*")
# PostgreSQL's error details quote row values (``Key (email)=(...) already exists``).
_DB_DETAIL = re.compile(r"(?m)^(DETAIL:).*$")
# The calendar feed's capability URL: the path segment is the only credential.
_FEED_PATH = re.compile(r"(/calendars/)[^/\s?\"]+(\.ics)")
# Identifiers of people and records (client and booking ids are UUIDs, in paths and in
# exception text) and email addresses: a log line is correlated by its request id instead.
_UUID = re.compile(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]|\r|\n")


def encode_for_log(value: str) -> str:
    """Render untrusted text on one line: CR, LF, ANSI escapes and other controls escaped."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), value)


def _redact(text: str) -> str:
    text = _JWT.sub("[token]", _BEARER.sub(r"\1[token]", text))
    text = _FEED_PATH.sub(r"\1[redacted]\2", _DB_DETAIL.sub(r"\1 [redacted]", text))
    return _EMAIL.sub("[email]", _UUID.sub("[uuid]", text))


class RedactingFilter(logging.Filter):
    """Tokens and database row values are removed from the message and from the traceback;
    the message is kept on one line (CR/LF/ANSI escaped) so it cannot forge log entries."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = encode_for_log(_redact(message))
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redact(record.exc_text)
        return True


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` (the ``X-Request-ID`` of the request being served)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


# Extra fields a JSON line may carry (``logger.info(..., extra={...})``): an allow-list, since
# the redacting filter sees only the message and the traceback.
JSON_EXTRA_FIELDS = ("route", "method", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id, and the
    (already redacted) traceback; behind ``RedactingFilter`` and ``RequestIdFilter``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        for field in JSON_EXTRA_FIELDS:
            if field in record.__dict__:
                line[field] = record.__dict__[field]
        if record.exc_info and not record.exc_text:
            record.exc_text = _redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = _redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)
