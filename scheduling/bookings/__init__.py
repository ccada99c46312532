"""The booking lifecycle (issue 5): holds, confirmation, cancellation and rescheduling, series,
role views, notifications and reminders. ``docs/bookings.md`` describes it."""
