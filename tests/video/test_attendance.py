"""The attendance arithmetic (video.attendance): pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from video.attendance import attended, intersection, merged, there_by, total

T0 = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def span(start: float, end: float) -> tuple[datetime, datetime]:
    return (at(start), at(end))


def test_merged_sorts_joins_overlapping_and_touching_and_drops_empty_ones() -> None:
    spans = [span(30, 40), span(0, 10), span(5, 12), span(12, 15), span(20, 20), span(25, 22)]
    assert merged(spans) == [span(0, 15), span(30, 40)]


def test_merged_keeps_a_span_inside_another_once() -> None:
    assert merged([span(0, 50), span(10, 20), span(45, 50)]) == [span(0, 50)]


def test_both_connected_the_whole_time() -> None:
    result = attended([span(0, 50)], [span(0, 50)])
    assert (result.seconds, result.actual_start, result.actual_end) == (3000, at(0), at(50))


def test_a_late_join_counts_from_the_later_side() -> None:
    """The therapist waits from minute 0; the client connects at minute 7."""
    result = attended([span(0, 50)], [span(7, 52)])
    assert result.spans == [span(7, 50)]
    assert (result.duration, result.actual_start, result.actual_end) == (
        timedelta(minutes=43),
        at(7),
        at(50),
    )


def test_several_drops_on_both_sides_leave_gaps() -> None:
    """The client drops twice (Wi-Fi to cellular), the therapist once; only the moments both
    were connected count, and the actual end is the last of them."""
    therapist = [span(0, 20), span(21, 50)]
    client = [span(2, 10), span(11, 30), span(32, 45)]
    result = attended(therapist, client)
    assert result.spans == [span(2, 10), span(11, 20), span(21, 30), span(32, 45)]
    assert result.duration == timedelta(minutes=8 + 9 + 9 + 13)
    assert (result.actual_start, result.actual_end) == (at(2), at(45))


def test_one_side_only_is_no_attended_time() -> None:
    for therapist, client in (([span(0, 50)], []), ([], [span(0, 50)]), ([], [])):
        result = attended(therapist, client)
        assert (result.spans, result.seconds) == ([], 0)
        assert (result.actual_start, result.actual_end) == (None, None)


def test_never_at_the_same_time_is_no_attended_time() -> None:
    """The therapist left before the client came: sequential, not overlapping."""
    result = attended([span(0, 10)], [span(10, 20), span(25, 30)])
    assert (result.spans, result.seconds, result.actual_start) == ([], 0, None)


def test_overlapping_and_unsorted_reports_count_each_moment_once() -> None:
    """A replaced socket's interval overlaps the new one's; reports arrive out of order."""
    therapist = [span(10, 30), span(0, 15), span(25, 40)]
    client = [span(35, 50), span(5, 20), span(18, 36)]
    result = attended(therapist, client)
    assert result.spans == [span(5, 40)]
    assert result.duration == timedelta(minutes=35)


def test_attended_seconds_round_down() -> None:
    therapist = [(T0, T0 + timedelta(seconds=90, milliseconds=999))]
    assert attended(therapist, [(T0, at(5))]).seconds == 90


def test_intersection_and_total_are_symmetric() -> None:
    a = [span(0, 10), span(20, 30)]
    b = [span(5, 25)]
    assert intersection(a, b) == intersection(b, a) == [span(5, 10), span(20, 25)]
    assert total(a + b) == timedelta(minutes=30)


def test_there_by_a_deadline_means_started_before_it() -> None:
    deadline = at(10)
    assert there_by([span(9, 9.5)], deadline)  # came and went before the deadline: was there
    assert not there_by([span(10, 40)], deadline)  # came exactly at the deadline: late
    assert not there_by([span(12, 40)], deadline)
    assert not there_by([span(5, 5)], deadline)  # an empty interval is nothing
    assert not there_by([], deadline)
