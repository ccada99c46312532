"""Log hygiene: no tokens, secrets or control characters reach a log line."""

from __future__ import annotations

import logging
import re

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.?[A-Za-z0-9\-_.+/=]*")
_JWT = re.compile(r"eyJ[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_.+/=]*")
# PostgreSQL's error details quote row values (``Key (email)=(...) already exists``).
_DB_DETAIL = re.compile(r"(?m)^(DETAIL:).*$")
# The calendar feed's capability URL: the path segment is the only credential.
_FEED_PATH = re.compile(r"(/calendars/)[^/\s?\"]+(\.ics)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]|\r|\n")


def encode_for_log(value: str) -> str:
    """Render untrusted text on one line: CR, LF, ANSI escapes and other controls escaped."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), value)


def _redact(text: str) -> str:
    text = _JWT.sub("[token]", _BEARER.sub(r"\1[token]", text))
    return _FEED_PATH.sub(r"\1[redacted]\2", _DB_DETAIL.sub(r"\1 [redacted]", text))


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
