"""What the apps above scheduling add to a booking, registered from their ``AppConfig.ready()``.

Scheduling sits below billing and video in the layers (docs/architecture.md) and never imports
them; where a booking's reads or changes need what they know, they register it here:

- ``BookingPayment`` (billing, ``billing.apps``): the booking's session payment in its API
  responses: the ``Prefetch`` every booking read adds (one query for a page of bookings), what
  a booking inserted in this transaction is marked with (it has no payment yet: one starts only
  with /pay on a booking that exists, so its answer reads nothing), the value the ``payment``
  field shows and that value's serializer (for the OpenAPI schema).
- ``SessionEvidence`` (video, ``video.apps``): the room's attendance, checked with the booking
  locked, in the same transaction, before a started session is recorded completed or a client
  no-show: a check raises the refusal, or returns the details audited with the change.

Both apps are always installed: asking for what nobody registered is a configuration error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Prefetch
from rest_framework.serializers import Serializer

from scheduling.models import Booking


@dataclass(frozen=True)
class BookingPayment:
    prefetch: Callable[[], Prefetch[Any]]  # added to every booking read
    none_yet: Callable[[Booking], None]  # a booking just inserted: as if prefetched, empty
    shown: Callable[[Booking], dict[str, Any] | None]  # the ``payment`` field's value
    schema: Serializer[Any]  # what ``shown`` returns, for the OpenAPI schema


class EvidenceCheck(Protocol):
    def __call__(self, *, booking: Booking, now: datetime) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SessionEvidence:
    completion: EvidenceCheck  # before confirmed -> completed
    client_no_show: EvidenceCheck  # before confirmed -> no_show


_payment: list[BookingPayment] = []
_evidence: list[SessionEvidence] = []


def booking_payment_register(contribution: BookingPayment) -> None:
    _payment[:] = [contribution]


def session_evidence_register(contribution: SessionEvidence) -> None:
    _evidence[:] = [contribution]


def booking_payment() -> BookingPayment:
    if not _payment:
        raise ImproperlyConfigured("billing has not registered the booking's payment")
    return _payment[0]


def session_evidence() -> SessionEvidence:
    if not _evidence:
        raise ImproperlyConfigured("video has not registered the session's evidence")
    return _evidence[0]
