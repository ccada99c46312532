"""Slot engine benchmark: one therapist, 90 days, 500 bookings, 2 imported recurring calendars.

Times ``scheduling.slots.open_slots`` (the pure function the slots endpoint and the booking
check run) over 90 days; the calendars are expanded once beforehand, as ``sync_calendars``
stores them. Prints one JSON line: median and p95 in milliseconds (goal: median < 10 ms).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling import ics, slots  # pure modules: no Django setup needed

RUNS = 200
ZONE = ZoneInfo("America/New_York")
NOW = datetime(2025, 2, 3, 12, tzinfo=UTC)  # 90 days across the March DST change
DAYS = 90

CALENDARS = [
    # Weekly supervision with one exception, and a moved occurrence.
    """BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:sup@bench\r\n"""
    """DTSTART;TZID=America/New_York:20250204T120000\r\n"""
    """DTEND;TZID=America/New_York:20250204T130000\r\nRRULE:FREQ=WEEKLY;BYDAY=TU,TH\r\n"""
    """EXDATE;TZID=America/New_York:20250311T120000\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\n"""
    """UID:sup@bench\r\nRECURRENCE-ID;TZID=America/New_York:20250318T120000\r\n"""
    """DTSTART;TZID=America/New_York:20250318T150000\r\n"""
    """DTEND;TZID=America/New_York:20250318T160000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n""",
    # A daily school run, and a yearly all-day event.
    """BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:school@bench\r\n"""
    """DTSTART;TZID=America/New_York:20250101T150000\r\n"""
    """DTEND;TZID=America/New_York:20250101T153000\r\nRRULE:FREQ=DAILY\r\nEND:VEVENT\r\n"""
    """BEGIN:VEVENT\r\nUID:conf@bench\r\nDTSTART;VALUE=DATE:20250401\r\n"""
    """DTEND;VALUE=DATE:20250403\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n""",
]


def _bookings(rng: random.Random) -> list[slots.Busy]:
    """500 sessions of 50 minutes on the hour in working hours (5-minute buffers: no overlap)."""
    taken: set[datetime] = set()
    busy = []
    while len(busy) < 500:
        day = NOW.astimezone(ZONE).date() + timedelta(days=rng.randrange(DAYS))
        if day.weekday() > 4:
            continue
        hour = rng.randrange(8, 20)
        start = datetime(day.year, day.month, day.day, hour, tzinfo=ZONE).astimezone(UTC)
        if start in taken:
            continue
        taken.add(start)
        end = start + timedelta(minutes=50)
        busy.append(
            slots.Busy(
                start - timedelta(minutes=5), end + timedelta(minutes=5), session_start=start
            )
        )
    return busy


def main() -> None:
    rng = random.Random(4)
    expand_started = time.perf_counter()
    imported = [
        slots.Busy(i.start, i.end)
        for text in CALENDARS
        for i in ics.parse_busy(
            text.encode(),
            zone=ZONE,
            window_start=NOW - timedelta(days=1),
            window_end=NOW + timedelta(days=DAYS + 2),
            max_intervals=5000,
        )
    ]
    expand_ms = (time.perf_counter() - expand_started) * 1000
    busy = _bookings(rng) + imported
    schedule = slots.Schedule(
        zone=ZONE,
        weekly=[slots.WeeklyWindow(d, 8 * 60, 21 * 60) for d in range(5)]
        + [slots.WeeklyWindow(5, 10 * 60, 14 * 60)],
        policy=slots.Policy(
            buffer_before=timedelta(minutes=5),
            buffer_after=timedelta(minutes=5),
            min_notice=timedelta(hours=24),
            horizon=timedelta(days=120),
            max_per_day=10,
            step=timedelta(minutes=15),
        ),
    )
    timings = []
    found: list[datetime] = []
    for _ in range(RUNS):
        started = time.perf_counter()
        found = slots.open_slots(
            schedule,
            duration=timedelta(minutes=50),
            busy=busy,
            start=NOW,
            end=NOW + timedelta(days=DAYS),
            now=NOW,
        )
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    print(
        json.dumps(
            {
                "bench": "slots",
                "days": DAYS,
                "bookings": 500,
                "imported_busy_intervals": len(imported),
                "slots_found": len(found),
                "runs": RUNS,
                "median_ms": round(statistics.median(timings), 3),
                "p95_ms": round(timings[int(RUNS * 0.95) - 1], 3),
                "goal_median_ms": 10,
                "calendar_expansion_ms": round(expand_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
