"""Log hygiene (api/logging.py): tokens and row values never reach a log line."""

from __future__ import annotations

import logging

from api.logging import RedactingFilter, encode_for_log

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz"


def record_for(message: str, *, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("t", logging.ERROR, __file__, 1, message, (), exc_info)


def formatted(record: logging.LogRecord) -> str:
    RedactingFilter().filter(record)
    return logging.Formatter("%(message)s").format(record)


def test_jwt_15_a_bearer_token_in_the_message_is_redacted():
    text = formatted(record_for(f"Authorization: Bearer {TOKEN}"))
    assert text == "Authorization: Bearer [token]"


def test_jwt_15_a_token_inside_an_exception_is_redacted_from_the_traceback():
    try:
        raise ValueError(f"could not use {TOKEN}")
    except ValueError as exc:
        text = formatted(record_for("Internal Server Error: /api/v1/x", exc=exc))
    assert "ValueError: could not use [token]" in text
    assert TOKEN not in text


def test_enc_06_database_error_details_with_row_values_are_redacted():
    detail = "duplicate key value\nDETAIL:  Key (email)=(pat@example.test) already exists."
    try:
        raise RuntimeError(detail)
    except RuntimeError as exc:
        text = formatted(record_for("Internal Server Error", exc=exc))
    assert "pat@example.test" not in text
    assert "DETAIL: [redacted]" in text


def test_aud_16_cr_lf_and_ansi_escapes_are_encoded_on_one_line():
    forged = "bob\r\n2026-01-01 INFO forged entry \x1b[31mred"
    assert encode_for_log(forged) == "bob\\r\\n2026-01-01 INFO forged entry \\x1b[31mred"
    assert "\n" not in formatted(record_for(forged))


def test_a_calendar_feed_secret_in_an_access_log_line_is_redacted():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v1/calendars/s3cr3t-Feed_Token.ics", "1.1", 200),
        None,
    )
    text = formatted(record)
    assert "s3cr3t-Feed_Token" not in text
    assert '"GET /api/v1/calendars/[redacted].ics HTTP/1.1" 200' in text


def test_the_access_log_goes_through_the_redacting_filter():
    from django.conf import settings

    logger = settings.LOGGING["loggers"]["uvicorn.access"]
    handler = settings.LOGGING["handlers"][logger["handlers"][0]]
    assert "redact" in handler["filters"]
