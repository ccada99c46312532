"""The hash chain: sealing, verification (AUD-10) and concurrent writers (AUD-11)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction

from audit.canonical import EVENT_FIELDS, content_hash, link_hash
from audit.chain import audit_checkpoint_create, audit_seal, chain_head, head_document
from audit.db import db_now
from audit.models import AuditCheckpoint, AuditEvent, AuditSeal
from audit.services import audit_record
from audit.verify import chain_verify
from tests.audit.conftest import Attacker
from tests.concurrency import run_at_once

pytestmark = pytest.mark.django_db


def _sealed(count: int) -> list[AuditSeal]:
    events = [audit_record(action="test.chain", details={"n": n}) for n in range(count)]
    audit_seal()
    return list(AuditSeal.objects.filter(event__in=events).order_by("seq"))


def _renumber(attacker: Attacker, *, above: int, by: int) -> None:
    """Shift every seq above ``above`` by ``by`` (in two steps: seq is a primary key)."""
    attacker.sql("UPDATE audit_seal SET seq = -(seq + %s) WHERE seq > %s", [by, above])
    attacker.sql("UPDATE audit_seal SET seq = -seq WHERE seq < 0")


def test_sealing_links_committed_events_gapless_and_in_order() -> None:
    seals = _sealed(5)
    first = seals[0].seq
    assert [s.seq for s in seals] == list(range(first, first + 5))
    for before, after in zip(seals, seals[1:], strict=False):
        assert after.prev_hash == before.hash
    assert audit_seal().sealed == 0  # nothing new: a second run changes nothing
    report = chain_verify()
    assert report.ok, report.summary()
    assert report.head == chain_head()
    assert report.unsealed == 0


def test_events_wait_unsealed_until_the_sealer_runs_and_verify_counts_them() -> None:
    _sealed(1)
    audit_record(action="test.chain.pending")
    report = chain_verify()
    assert report.ok
    assert report.unsealed == 1
    audit_seal()
    assert chain_verify().unsealed == 0


def test_aud_10_an_edited_field_is_reported_altered(attacker: Attacker) -> None:
    target = _sealed(3)[1]
    attacker.disarm()
    attacker.sql("UPDATE audit_event SET action = 'read' WHERE id = %s", [target.event_id])
    report = chain_verify()
    assert (report.broken.seq, report.broken.kind) == (target.seq, "altered")
    assert report.summary().startswith(f"BROKEN at seq {target.seq}: altered")


def test_aud_10_an_edited_link_is_reported_altered(attacker: Attacker) -> None:
    target = _sealed(3)[1]
    attacker.disarm()
    attacker.sql("UPDATE audit_seal SET hash = %s WHERE seq = %s", ["f" * 64, target.seq])
    report = chain_verify()
    assert report.broken.kind in ("altered", "reordered")
    assert report.broken.seq == target.seq


def test_aud_10_a_deleted_row_is_reported_as_a_gap(attacker: Attacker) -> None:
    target = _sealed(3)[1]
    attacker.disarm()
    attacker.sql("DELETE FROM audit_seal WHERE seq = %s", [target.seq])
    attacker.sql("DELETE FROM audit_event WHERE id = %s", [target.event_id])
    report = chain_verify()
    assert (report.broken.seq, report.broken.kind) == (target.seq, "deleted")


def test_aud_10_a_deleted_row_with_the_rest_renumbered_is_reported_deleted(
    attacker: Attacker,
) -> None:
    target = _sealed(3)[1]
    attacker.disarm()
    attacker.sql("DELETE FROM audit_seal WHERE seq = %s", [target.seq])
    attacker.sql("DELETE FROM audit_event WHERE id = %s", [target.event_id])
    _renumber(attacker, above=target.seq, by=-1)
    report = chain_verify()
    assert (report.broken.seq, report.broken.kind) == (target.seq, "deleted")


def test_aud_10_two_rows_swapped_are_reported_reordered(attacker: Attacker) -> None:
    first, second = _sealed(4)[1:3]
    attacker.disarm()
    attacker.sql("UPDATE audit_seal SET seq = -1 WHERE seq = %s", [first.seq])
    attacker.sql("UPDATE audit_seal SET seq = %s WHERE seq = %s", [first.seq, second.seq])
    attacker.sql("UPDATE audit_seal SET seq = %s WHERE seq = -1", [second.seq])
    report = chain_verify()
    assert (report.broken.seq, report.broken.kind) == (first.seq, "reordered")


def test_aud_10_a_back_dated_row_inserted_mid_chain_is_reported_inserted(
    attacker: Attacker,
) -> None:
    before, after = _sealed(3)[0:2]
    attacker.disarm()
    forged = AuditEvent.objects.create(
        occurred_at=before.sealed_at - timedelta(days=30), action="read", actor_role="therapist"
    )
    row = AuditEvent.objects.filter(pk=forged.pk).values(*EVENT_FIELDS).get()
    digest = content_hash(row)
    _renumber(attacker, above=before.seq, by=1)
    AuditSeal.objects.create(
        seq=before.seq + 1,
        event=forged,
        content_hash=digest,
        prev_hash=before.hash,
        hash=link_hash(
            prev_hash=before.hash,
            seq=before.seq + 1,
            content_hash=digest,
            sealed_at=before.sealed_at,
        ),
        sealed_at=before.sealed_at,
    )
    report = chain_verify()
    assert (report.broken.seq, report.broken.kind) == (before.seq + 1, "inserted")
    assert after.seq == before.seq + 1  # the genuine successor was pushed along


def test_aud_10_a_back_dated_row_slipped_in_before_sealing_is_reported_inserted(
    attacker: Attacker,
) -> None:
    _sealed(2)
    attacker.disarm()
    AuditEvent.objects.create(occurred_at=db_now(connection) - timedelta(days=3), action="read")
    sealed = audit_seal()
    report = chain_verify()
    assert (report.broken.seq, report.broken.kind) == (sealed.head.seq, "inserted")
    assert "back-dated" in report.broken.detail


def test_aud_10_a_recomputed_chain_is_caught_by_a_signed_checkpoint(attacker: Attacker) -> None:
    target = _sealed(3)[1]
    audit_checkpoint_create()
    saved_off_box = head_document(chain_head())
    attacker.disarm()
    attacker.sql("UPDATE audit_event SET action = 'read' WHERE id = %s", [target.event_id])
    attacker.sql("DELETE FROM audit_seal")
    audit_seal()  # a whole new, internally consistent chain
    report = chain_verify()
    assert report.broken.kind == "rewritten"
    # Removing the stored checkpoints too: the chain alone looks fine, the saved head does not.
    attacker.sql("DELETE FROM audit_checkpoint")
    assert chain_verify().ok
    report = chain_verify(heads=[saved_off_box])
    assert (report.broken.seq, report.broken.kind) == (saved_off_box["seq"], "rewritten")


def test_aud_10_a_truncated_tail_is_caught_by_a_saved_head(attacker: Attacker) -> None:
    seals = _sealed(4)
    saved_off_box = head_document(chain_head())
    attacker.disarm()
    for seal in seals[2:]:
        attacker.sql("DELETE FROM audit_seal WHERE seq = %s", [seal.seq])
        attacker.sql("DELETE FROM audit_event WHERE id = %s", [seal.event_id])
    assert chain_verify().ok  # nothing inside the chain shows a missing tail
    report = chain_verify(heads=[saved_off_box])
    assert (report.broken.seq, report.broken.kind) == (seals[-1].seq, "truncated")


def test_aud_10_a_forged_checkpoint_is_reported(attacker: Attacker) -> None:
    _sealed(1)
    head = chain_head()
    forged = {**head_document(head), "hash": "0" * 64}
    attacker.disarm()
    AuditCheckpoint.objects.create(seq=head.seq, hash="0" * 64, document=forged)
    report = chain_verify()
    assert report.broken.kind == "rewritten"
    assert "signature" in report.broken.detail


def test_aud_10_a_head_signed_by_another_key_is_refused() -> None:
    _sealed(1)
    document = head_document(chain_head())
    assert chain_verify(heads=[document]).ok
    assert not chain_verify(heads=[{**document, "kid": "someone-else"}]).ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_aud_11_fifty_concurrent_writers_never_fork_the_chain() -> None:
    mark = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    start = audit_seal().head
    writers, per_writer = 50, 4

    def write(n: int) -> None:
        for i in range(per_writer):
            with transaction.atomic():
                audit_record(action="test.concurrent", details={"writer": n, "i": i})
            audit_seal()  # sealers race too

    assert run_at_once(write, writers) == [None] * writers
    audit_seal()

    seals = list(AuditSeal.objects.filter(seq__gt=start.seq).order_by("seq"))
    ours = set(
        AuditEvent.objects.filter(id__gt=mark, action="test.concurrent").values_list(
            "id", flat=True
        )
    )
    assert len(ours) == writers * per_writer
    assert ours <= {s.event_id for s in seals}  # every event sealed, once (event is unique)
    assert [s.seq for s in seals] == list(range(start.seq + 1, start.seq + 1 + len(seals)))
    previous = start.hash
    for seal in seals:  # each link points at exactly the one before it: no fork
        assert seal.prev_hash == previous
        previous = seal.hash
    assert len({s.prev_hash for s in seals}) == len(seals)
    report = chain_verify()
    assert report.ok, report.summary()


@pytest.mark.postgres
def test_aud_10_an_event_hidden_from_the_sealer_is_reported(attacker: Attacker) -> None:
    """An event slipped in below the sealed ids with a forged, ancient txid is below every
    sealing run's horizon and never sealed; once older than the lag, verify says so."""
    _sealed(1)
    attacker.disarm()
    hidden = AuditEvent.objects.create(
        id=-1, occurred_at=db_now(connection) - timedelta(days=3), action="read", txid=1
    )
    audit_seal()
    assert not AuditSeal.objects.filter(event=hidden).exists()
    report = chain_verify()
    assert report.broken.kind == "inserted"
    assert f"event {hidden.pk} " in report.broken.detail
