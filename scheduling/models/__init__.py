"""The scheduling app's data, one module per area; invariants a row can state are database
constraints, and times are stored in UTC. Every model is importable from here (Django's
``scheduling.models``), as before the split.
"""

from scheduling.models.availability import (
    AvailabilityOverride,
    AvailabilityRule,
    OverrideKind,
)
from scheduling.models.bookings import (
    Booking,
    BookingNotification,
    BookingSeries,
    BookingStatus,
    BookingTransition,
    CancellationPolicy,
    FeeRequest,
    FeeRequestKind,
    FeeRequestState,
    LateFeeKind,
    NotificationKind,
    SeriesFrequency,
)
from scheduling.models.calendars import (
    CalendarSource,
    ExternalBusyInterval,
    ExternalCalendar,
)
from scheduling.models.clients import (
    ClientProfile,
)
from scheduling.models.directory import (
    NO_OPEN_SLOT_RANK,
    Attribute,
    CalendarDetail,
    Delivery,
    OpenSlotRun,
    TherapistAttribute,
    TherapistProfile,
)
from scheduling.models.feed_tokens import (
    CalendarFeedToken,
)
from scheduling.models.licences import (
    Licence,
)
from scheduling.models.notes import (
    SessionNote,
    SessionNoteVersion,
)
from scheduling.models.session_types import (
    SESSION_MAX_MINUTES,
    SessionType,
)

__all__ = [
    "Attribute",
    "AvailabilityOverride",
    "AvailabilityRule",
    "Booking",
    "BookingNotification",
    "BookingSeries",
    "BookingStatus",
    "BookingTransition",
    "CalendarDetail",
    "CalendarFeedToken",
    "CalendarSource",
    "CancellationPolicy",
    "ClientProfile",
    "Delivery",
    "ExternalBusyInterval",
    "ExternalCalendar",
    "FeeRequest",
    "FeeRequestKind",
    "FeeRequestState",
    "LateFeeKind",
    "Licence",
    "NO_OPEN_SLOT_RANK",
    "NotificationKind",
    "OpenSlotRun",
    "OverrideKind",
    "SESSION_MAX_MINUTES",
    "SeriesFrequency",
    "SessionNote",
    "SessionNoteVersion",
    "SessionType",
    "TherapistAttribute",
    "TherapistProfile",
]
