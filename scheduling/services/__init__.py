"""The scheduling app's writes, one module per area: the directory (profiles and the
availability summary), session types, availability, licences, imported calendars and feeds out.
Bookings, notes and client profiles have packages of their own (``scheduling/bookings``,
``notes``, ``clients``). The public names are importable from here, as before the split.
"""

from scheduling.services.availability import (
    WeeklyWindowInput,
    availability_override_create,
    availability_override_delete,
    availability_rules_replace,
)
from scheduling.services.calendars import (
    EXPAND_DAYS,
    MAX_BUSY_PER_CALENDAR,
    CalendarRefused,
    CalendarTooLarge,
    external_calendar_claim,
    external_calendar_delete,
    external_calendar_subscribe,
    external_calendar_sync,
    external_calendar_upload,
    external_calendars_sync_due,
)
from scheduling.services.directory import (
    CARD_SESSION_TYPE_FIELDS,
    SUMMARY_DAYS,
    availability_summaries_refresh,
    availability_summary_compute,
    availability_summary_refresh,
    directory_card_refresh,
    open_slot_runs,
    therapist_profile_create,
    therapist_profile_update,
)
from scheduling.services.feeds import (
    FEED_REFRESH,
    IssuedFeedToken,
    booking_ics_read,
    calendar_feed_read,
    calendar_feed_token_create,
    calendar_feed_token_revoke,
    feed_event,
)
from scheduling.services.licences import (
    licence_create,
    licence_delete,
    licence_update,
    licence_verify,
)
from scheduling.services.session_types import (
    session_type_archive,
    session_type_create,
    session_type_update,
)

__all__ = [
    "CARD_SESSION_TYPE_FIELDS",
    "CalendarRefused",
    "CalendarTooLarge",
    "EXPAND_DAYS",
    "FEED_REFRESH",
    "IssuedFeedToken",
    "MAX_BUSY_PER_CALENDAR",
    "SUMMARY_DAYS",
    "WeeklyWindowInput",
    "availability_override_create",
    "availability_override_delete",
    "availability_rules_replace",
    "availability_summaries_refresh",
    "availability_summary_compute",
    "availability_summary_refresh",
    "booking_ics_read",
    "calendar_feed_read",
    "calendar_feed_token_create",
    "calendar_feed_token_revoke",
    "directory_card_refresh",
    "external_calendar_claim",
    "external_calendar_delete",
    "external_calendar_subscribe",
    "external_calendar_sync",
    "external_calendar_upload",
    "external_calendars_sync_due",
    "feed_event",
    "licence_create",
    "licence_delete",
    "licence_update",
    "licence_verify",
    "open_slot_runs",
    "session_type_archive",
    "session_type_create",
    "session_type_update",
    "therapist_profile_create",
    "therapist_profile_update",
]
