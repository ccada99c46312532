"""The slot engine (``scheduling.slots``): a pure function, tested without the database.

Examples pin the DST behaviour in America/New_York, Europe/London and two zones with
half-hour offsets (Australia/Adelaide, and Australia/Lord_Howe whose DST shift is itself 30
minutes; Asia/Kolkata has no DST). Property tests check the engine against an independent,
minute-by-minute oracle.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.serializers import slots_payload
from scheduling.slots import (
    Busy,
    ExtraHours,
    Policy,
    Schedule,
    TimeOff,
    WeeklyWindow,
    open_slots,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
ADELAIDE = ZoneInfo("Australia/Adelaide")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KOLKATA = ZoneInfo("Asia/Kolkata")
HOUR = timedelta(hours=1)
MIN = timedelta(minutes=1)


def every_day(start: str, end: str) -> list[WeeklyWindow]:
    a = int(start[:2]) * 60 + int(start[3:])
    b = int(end[:2]) * 60 + int(end[3:])
    return [WeeklyWindow(d, a, b) for d in range(7)]


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]


def slots_on(schedule: Schedule, day: date, *, duration: int = 60, busy=(), now=None):
    zone = schedule.zone
    start = datetime.combine(day, time(0), tzinfo=zone) - 2 * HOUR
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    found = open_slots(
        schedule,
        duration=timedelta(minutes=duration),
        busy=list(busy),
        start=start,
        end=end,
        now=now or start - timedelta(days=1),
    )
    return [s for s in found if s.astimezone(zone).date() == day]


def walls(found, zone):
    return [s.astimezone(zone).strftime("%H:%M%z") for s in found]


# --- DST examples --------------------------------------------------------------------------


def test_weekly_nine_to_five_stays_local_across_the_new_york_spring_change():
    schedule = Schedule(zone=NY, weekly=every_day("09:00", "17:00"))
    before = slots_on(schedule, date(2025, 3, 7))
    after = slots_on(schedule, date(2025, 3, 10))
    assert walls(before, NY)[0] == "09:00-0500" and walls(after, NY)[0] == "09:00-0400"
    assert before[0].astimezone(UTC).hour == 14 and after[0].astimezone(UTC).hour == 13
    # The same local times on both sides: 09:00 .. 16:00 every 30 minutes.
    assert [w[:5] for w in walls(before, NY)] == [w[:5] for w in walls(after, NY)]
    assert walls(after, NY)[-1] == "16:00-0400"


def test_weekly_hours_stay_local_across_the_new_york_autumn_change():
    schedule = Schedule(zone=NY, weekly=every_day("09:00", "17:00"))
    assert walls(slots_on(schedule, date(2025, 10, 31)), NY)[0] == "09:00-0400"
    assert walls(slots_on(schedule, date(2025, 11, 3)), NY)[0] == "09:00-0500"


def test_no_slot_in_the_nonexistent_new_york_hour():
    schedule = Schedule(zone=NY, weekly=every_day("00:00", "04:00"))
    assert walls(slots_on(schedule, date(2025, 3, 9)), NY) == [
        "00:00-0500",
        "00:30-0500",
        "01:00-0500",
        "01:30-0500",  # runs 60 real minutes, to 03:30 EDT
        "03:00-0400",
    ]


def test_the_repeated_new_york_hour_is_not_counted_twice():
    schedule = Schedule(zone=NY, weekly=every_day("00:00", "03:00"))
    found = slots_on(schedule, date(2025, 11, 2))
    assert walls(found, NY) == [
        "00:00-0400",
        "00:30-0400",
        "01:00-0400",
        "01:30-0400",
        "02:00-0500",
    ]
    assert len({s.astimezone(NY).strftime("%H:%M") for s in found}) == len(found)


def test_london_spring_gap_and_autumn_repeat():
    schedule = Schedule(zone=LONDON, weekly=every_day("00:00", "03:30"))
    assert walls(slots_on(schedule, date(2025, 3, 30)), LONDON) == [
        "00:00+0000",
        "00:30+0000",
        "02:00+0100",
        "02:30+0100",
    ]
    assert walls(slots_on(schedule, date(2025, 10, 26)), LONDON) == [
        "00:00+0100",
        "00:30+0100",
        "01:00+0100",
        "01:30+0100",
        "02:00+0000",
        "02:30+0000",
    ]


def test_adelaide_half_hour_offset_across_both_changes():
    schedule = Schedule(zone=ADELAIDE, weekly=every_day("01:00", "04:00"))
    # 2025-10-05 02:00 ACST -> 03:00 ACDT: 02:00 and 02:30 do not exist.
    assert walls(slots_on(schedule, date(2025, 10, 5)), ADELAIDE) == [
        "01:00+0930",
        "01:30+0930",
        "03:00+1030",
    ]
    # 2025-04-06 03:00 ACDT -> 02:00 ACST: 02:00-02:59 happens twice, offered once.
    assert walls(slots_on(schedule, date(2025, 4, 6)), ADELAIDE) == [
        "01:00+1030",
        "01:30+1030",
        "02:00+1030",
        "02:30+1030",
        "03:00+0930",
    ]


def test_lord_howe_half_hour_dst_shift():
    schedule = Schedule(zone=LORD_HOWE, weekly=every_day("01:00", "03:00"))
    # 2025-10-05 02:00 +1030 -> 02:30 +11: 02:00-02:29 does not exist.
    found = slots_on(schedule, date(2025, 10, 5), duration=30)
    assert walls(found, LORD_HOWE) == ["01:00+1030", "01:30+1030", "02:30+1100"]


def test_kolkata_half_hour_offset_without_dst():
    schedule = Schedule(zone=KOLKATA, weekly=every_day("09:00", "10:00"))
    found = slots_on(schedule, date(2025, 6, 2), duration=30)
    assert [s.isoformat() for s in found] == [
        "2025-06-02T03:30:00+00:00",
        "2025-06-02T04:00:00+00:00",
    ]


# --- Rules, overrides and policy -------------------------------------------------------------


MONDAY = date(2025, 6, 2)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def test_extra_hours_add_and_time_off_removes():
    schedule = Schedule(
        zone=LONDON,
        weekly=[WeeklyWindow(0, 9 * 60, 10 * 60)],
        extra=[
            ExtraHours(MONDAY, 14 * 60, 15 * 60),
            ExtraHours(MONDAY + timedelta(7), 14 * 60, 15 * 60),
        ],
        time_off=[TimeOff(MONDAY + timedelta(7), MONDAY + timedelta(8))],
    )
    assert walls(slots_on(schedule, MONDAY, now=NOW), LONDON) == ["09:00+0100", "14:00+0100"]
    assert slots_on(schedule, MONDAY + timedelta(7), now=NOW) == []


def test_a_session_may_run_across_two_touching_windows():
    schedule = Schedule(
        zone=LONDON,
        weekly=[WeeklyWindow(0, 9 * 60, 10 * 60), WeeklyWindow(0, 10 * 60, 11 * 60)],
    )
    assert walls(slots_on(schedule, MONDAY, duration=90, now=NOW), LONDON) == [
        "09:00+0100",
        "09:30+0100",
    ]


def test_buffers_of_existing_sessions_and_of_the_new_one():
    policy = Policy(buffer_before=timedelta(minutes=15), buffer_after=timedelta(minutes=15))
    schedule = Schedule(zone=UTC_ZONE, weekly=every_day("09:00", "17:00"), policy=policy)
    session = datetime(2025, 6, 2, 12, tzinfo=UTC)
    booked = Busy(session - 15 * MIN, session + HOUR + 15 * MIN, session_start=session)
    found = walls(slots_on(schedule, MONDAY, busy=[booked], now=NOW), UTC_ZONE)
    # 10:30 would end 11:30 + 15 min buffer, touching the booking's 11:45 buffer start: ok.
    assert "10:30+0000" in found and "11:00+0000" not in found
    # After: 13:00 end + 15 + 15 -> 13:30 is the first start.
    assert "13:00+0000" not in found and "13:30+0000" in found


def test_external_busy_blocks_with_the_new_sessions_buffers_only():
    policy = Policy(buffer_after=timedelta(minutes=30))
    schedule = Schedule(zone=UTC_ZONE, weekly=every_day("09:00", "17:00"), policy=policy)
    busy = Busy(datetime(2025, 6, 2, 12, tzinfo=UTC), datetime(2025, 6, 2, 13, tzinfo=UTC))
    found = walls(slots_on(schedule, MONDAY, busy=[busy], now=NOW), UTC_ZONE)
    assert "10:30+0000" in found and "11:00+0000" not in found and "13:00+0000" in found


def test_minimum_notice_and_horizon():
    policy = Policy(min_notice=timedelta(hours=3), horizon=timedelta(days=1))
    schedule = Schedule(zone=UTC_ZONE, weekly=every_day("09:00", "17:00"), policy=policy)
    now = datetime(2025, 6, 2, 8, 10, tzinfo=UTC)
    found = open_slots(
        schedule,
        duration=HOUR,
        busy=[],
        start=now,
        end=now + timedelta(days=5),
        now=now,
    )
    assert found[0] == datetime(2025, 6, 2, 11, 30, tzinfo=UTC)  # 08:10 + 3 h, on the grid
    assert found[-1] == datetime(2025, 6, 2, 16, tzinfo=UTC)  # Tuesday is beyond one day


def test_daily_maximum_counts_sessions_on_the_therapists_local_date():
    policy = Policy(max_per_day=1)
    schedule = Schedule(zone=NY, weekly=every_day("09:00", "12:00"), policy=policy)
    # 23:30 New York on Sunday 1 June is Monday 03:30 UTC: it counts for Sunday, not Monday.
    late_sunday = local(NY, 2025, 6, 1, 23, 30).astimezone(UTC)
    sunday_session = Busy(late_sunday, late_sunday + HOUR, session_start=late_sunday)
    assert slots_on(schedule, MONDAY, busy=[sunday_session], now=NOW)
    monday = local(NY, 2025, 6, 2, 20).astimezone(UTC)
    monday_session = Busy(monday, monday + HOUR, session_start=monday)
    assert slots_on(schedule, MONDAY, busy=[monday_session], now=NOW) == []
    # Imported busy times do not count toward the maximum.
    assert slots_on(schedule, MONDAY, busy=[Busy(monday, monday + HOUR)], now=NOW)


def test_naive_datetimes_are_refused():
    schedule = Schedule(zone=NY, weekly=every_day("09:00", "17:00"))
    with pytest.raises(ValueError):
        open_slots(
            schedule,
            duration=HOUR,
            busy=[],
            start=datetime(2025, 6, 2),
            end=datetime(2025, 6, 3),
            now=NOW,
        )


UTC_ZONE = ZoneInfo("UTC")


# --- Properties against an independent oracle ----------------------------------------------

ZONES = {
    "America/New_York": [date(2025, 3, 9), date(2025, 11, 2)],
    "Europe/London": [date(2025, 3, 30), date(2025, 10, 26)],
    "Australia/Adelaide": [date(2025, 4, 6), date(2025, 10, 5)],
    "Australia/Lord_Howe": [date(2025, 4, 6), date(2025, 10, 5)],
    "Asia/Kolkata": [date(2025, 6, 1)],
}


def _in_window(zone: ZoneInfo, instant: datetime, schedule: Schedule) -> bool:
    """Is the local wall time of ``instant`` inside a window of its local date?"""
    wall = instant.astimezone(zone)
    day, minute = wall.date(), wall.hour * 60 + wall.minute
    if any(t.first <= day <= t.last for t in schedule.time_off):
        return False
    spans = [(w.start_minute, w.end_minute) for w in schedule.weekly if w.weekday == day.weekday()]
    spans += [(x.start_minute, x.end_minute) for x in schedule.extra if x.on == day]
    return any(a <= minute < b for a, b in spans)


def _merged(spans):
    out = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def oracle(schedule, *, duration, busy, start, end, now):
    """Brute force, minute by minute, straight from the documented semantics."""
    zone, policy = schedule.zone, schedule.policy
    step = int(policy.step.total_seconds() // 60)
    found = set()
    day = start.astimezone(zone).date() - timedelta(days=1)
    while day <= end.astimezone(zone).date() + timedelta(days=1):
        if not any(t.first <= day <= t.last for t in schedule.time_off):
            spans = [
                (w.start_minute, w.end_minute)
                for w in schedule.weekly
                if w.weekday == day.weekday()
            ]
            spans += [(x.start_minute, x.end_minute) for x in schedule.extra if x.on == day]
            sessions = sum(
                1
                for b in busy
                if b.session_start and b.session_start.astimezone(zone).date() == day
            )
            full = policy.max_per_day is not None and sessions >= policy.max_per_day
            for a, b in _merged(spans):
                for m in range(a, b, step):
                    naive = datetime.combine(day, time(m // 60, m % 60))
                    s = naive.replace(tzinfo=zone).astimezone(UTC)
                    if s.astimezone(zone).replace(tzinfo=None) != naive:
                        continue  # does not exist
                    if full or not (start <= s < end):
                        continue
                    if s < now + policy.min_notice or s >= now + policy.horizon:
                        continue
                    minutes = int(duration.total_seconds() // 60)
                    if not all(_in_window(zone, s + k * MIN, schedule) for k in range(minutes)):
                        continue
                    lo, hi = s - policy.buffer_before, s + duration + policy.buffer_after
                    if any(x.start < hi and lo < x.end for x in busy):
                        continue
                    found.add(s)
        day += timedelta(days=1)
    return sorted(found)


@st.composite
def scenarios(draw):
    zone_name = draw(st.sampled_from(sorted(ZONES)))
    zone = ZoneInfo(zone_name)
    pivot = draw(st.sampled_from(ZONES[zone_name]))
    first = pivot - timedelta(days=draw(st.integers(0, 2)))
    minute = st.integers(0, 1440 // 5).map(lambda k: k * 5)

    def window() -> tuple[int, int]:
        a = draw(minute.filter(lambda v: v < 1440))
        length = draw(
            st.sampled_from([20, 60, 95, 180, 480, 1440]) | st.integers(1, 288).map(lambda k: k * 5)
        )
        return a, min(1440, a + length)

    weekly = [
        WeeklyWindow(draw(st.integers(0, 6)), *window()) for _ in range(draw(st.integers(0, 6)))
    ]
    if draw(st.booleans()):  # the common shape: the same hours every day
        daily = window()
        weekly += [WeeklyWindow(d, *daily) for d in range(7)]
    extra = [
        ExtraHours(first + timedelta(days=draw(st.integers(0, 3))), *window())
        for _ in range(draw(st.integers(0, 2)))
    ]
    time_off = []
    if draw(st.booleans()):
        off = first + timedelta(days=draw(st.integers(0, 3)))
        time_off.append(TimeOff(off, off + timedelta(days=draw(st.integers(0, 1)))))
    policy = Policy(
        buffer_before=timedelta(minutes=draw(st.sampled_from([0, 10, 15, 30]))),
        buffer_after=timedelta(minutes=draw(st.sampled_from([0, 5, 15, 45]))),
        min_notice=timedelta(minutes=draw(st.sampled_from([0, 60, 24 * 60]))),
        horizon=timedelta(days=draw(st.integers(1, 10))),
        max_per_day=draw(st.none() | st.integers(1, 3)),
        step=timedelta(minutes=draw(st.sampled_from([15, 20, 30, 45, 60]))),
    )
    start = datetime.combine(first, time(0), tzinfo=zone) + timedelta(
        minutes=draw(st.integers(0, 24 * 60))
    )
    end = start + timedelta(hours=draw(st.sampled_from([24, 48, 72]) | st.integers(1, 72)))
    now = start - timedelta(minutes=draw(st.integers(0, 36 * 60)))

    def busy_item():
        a = start - timedelta(hours=12) + timedelta(minutes=draw(st.integers(0, 96 * 12)) * 5)
        b = a + timedelta(minutes=draw(st.integers(1, 36)) * 5)
        session = a + timedelta(minutes=5) if draw(st.booleans()) and b - a > 2 * 5 * MIN else None
        return Busy(a.astimezone(UTC), b.astimezone(UTC), session_start=session)

    busy = [busy_item() for _ in range(draw(st.integers(0, 6)))]
    schedule = Schedule(zone=zone, weekly=weekly, extra=extra, time_off=time_off, policy=policy)
    duration = timedelta(minutes=draw(st.sampled_from([15, 30, 50, 60, 90])))
    return schedule, duration, busy, start, end, now


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_engine_equals_the_minute_by_minute_oracle(scenario):
    schedule, duration, busy, start, end, now = scenario
    kwargs = dict(duration=duration, busy=busy, start=start, end=end, now=now)
    assert open_slots(schedule, **kwargs) == oracle(schedule, **kwargs)


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_no_slot_overlaps_a_busy_interval_or_its_buffers(scenario):
    schedule, duration, busy, start, end, now = scenario
    policy = schedule.policy
    for s in open_slots(schedule, duration=duration, busy=busy, start=start, end=end, now=now):
        lo, hi = s - policy.buffer_before, s + duration + policy.buffer_after
        assert not any(b.start < hi and lo < b.end for b in busy)


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_every_slot_lies_inside_a_rule_window_in_local_time(scenario):
    schedule, duration, busy, start, end, now = scenario
    zone = schedule.zone
    for s in open_slots(schedule, duration=duration, busy=busy, start=start, end=end, now=now):
        wall = s.astimezone(zone)
        assert wall.replace(tzinfo=None).replace(tzinfo=zone).astimezone(UTC) == s  # exists, fold 0
        minutes = int(duration.total_seconds() // 60)
        assert all(_in_window(zone, s + k * MIN, schedule) for k in range(minutes))
        assert start <= s < end and s >= now + schedule.policy.min_notice


REQUESTER_ZONES = [
    "UTC",
    "Pacific/Kiritimati",
    "America/St_Johns",
    "Asia/Kathmandu",
    "Europe/London",
]


@PROPERTY_SETTINGS
@given(scenarios(), st.sampled_from(REQUESTER_ZONES), st.sampled_from(REQUESTER_ZONES))
def test_property_results_identical_whatever_the_requesters_zone(scenario, zone_a, zone_b):
    schedule, duration, busy, start, end, now = scenario

    def listed(zone_name):
        z = ZoneInfo(zone_name)
        found = open_slots(
            schedule,
            duration=duration,
            busy=busy,
            start=start.astimezone(z),
            end=end.astimezone(z),
            now=now,
        )
        return slots_payload(
            therapist_id=None, session_type=_SessionTypeStub(duration), starts=found, tz=zone_name
        )

    a, b = listed(zone_a), listed(zone_b)
    assert [datetime.fromisoformat(x["start"]) for x in a["slots"]] == [
        datetime.fromisoformat(x["start"]) for x in b["slots"]
    ]
    for item in a["slots"]:
        assert (
            datetime.fromisoformat(item["start"]).utcoffset()
            == datetime.fromisoformat(item["start"]).astimezone(ZoneInfo(zone_a)).utcoffset()
        )


class _SessionTypeStub:
    def __init__(self, duration: timedelta):
        self.pk = None
        self.duration_minutes = int(duration.total_seconds() // 60)
