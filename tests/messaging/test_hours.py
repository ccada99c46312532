"""Office hours and quiet hours in local wall-clock time, across DST and midnight."""

from __future__ import annotations

from datetime import UTC, datetime, time

from messaging.hours import within_office_hours, within_quiet_hours

WEEKDAYS_9_TO_5 = [{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)]


def test_office_hours_are_local_and_stay_at_nine_across_dst():
    ny = "America/New_York"
    winter_open = datetime(2027, 1, 4, 14, 30, tzinfo=UTC)  # Monday 09:30 EST
    summer_open = datetime(2027, 7, 5, 13, 30, tzinfo=UTC)  # Monday 09:30 EDT
    summer_closed = datetime(2027, 7, 5, 12, 30, tzinfo=UTC)  # Monday 08:30 EDT
    assert within_office_hours(windows=WEEKDAYS_9_TO_5, time_zone=ny, now=winter_open)
    assert within_office_hours(windows=WEEKDAYS_9_TO_5, time_zone=ny, now=summer_open)
    assert not within_office_hours(windows=WEEKDAYS_9_TO_5, time_zone=ny, now=summer_closed)
    saturday = datetime(2027, 7, 10, 15, 0, tzinfo=UTC)
    assert not within_office_hours(windows=WEEKDAYS_9_TO_5, time_zone=ny, now=saturday)
    assert within_office_hours(windows=[], time_zone=ny, now=saturday)  # no promise


def test_quiet_hours_may_cross_midnight():
    night = {"start": time(22, 0), "end": time(7, 0), "time_zone": "Europe/London"}
    assert within_quiet_hours(**night, now=datetime(2027, 1, 5, 23, 0, tzinfo=UTC))
    assert within_quiet_hours(**night, now=datetime(2027, 1, 5, 6, 59, tzinfo=UTC))
    assert not within_quiet_hours(**night, now=datetime(2027, 1, 5, 7, 0, tzinfo=UTC))
    assert not within_quiet_hours(
        start=None, end=None, time_zone="UTC", now=datetime(2027, 1, 5, 23, tzinfo=UTC)
    )
