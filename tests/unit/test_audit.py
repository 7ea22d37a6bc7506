"""The hash-chained audit log: sealing, and detection of every kind of tampering."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from plait.security.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    canonical_json,
    chain_hash,
    seal_entry,
    verify_chain,
)

NOW = 1_700_000_000.0
KEY = b"k" * 32


def event(i: int, **overrides: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "at": NOW + i,
        "actor": "alice",
        "action": "workflows.deploy",
        "resource": f"workflow:deploy-{i}",
        "outcome": "success",
        "source_ip": "10.0.0.7",
        "request_id": f"req-{i}",
        "details": {"version": i, "labels": {"stage": "prod", "b": [1, 2]}},
    }
    base.update(overrides)
    return AuditEvent(**base)


def chain(n: int, key: bytes | None = None) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(n):
        prev = seal_entry(prev, event(i), key)
        entries.append(prev)
    return entries


def test_first_entry_links_to_genesis() -> None:
    first = seal_entry(None, event(0))
    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH
    assert len(first.hash) == 64
    assert int(first.hash, 16) >= 0


def test_entries_link() -> None:
    entries = chain(3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[1].prev_hash == entries[0].hash
    assert entries[2].prev_hash == entries[1].hash


def test_valid_chain_verifies() -> None:
    entries = chain(20)
    report = verify_chain(entries)
    assert report.ok
    assert report.checked == 20
    assert report.first_bad_seq is None
    assert report.problem is None
    assert (report.head_seq, report.head_hash) == (20, entries[-1].hash)


def test_empty_chain_is_valid() -> None:
    report = verify_chain([])
    assert report.ok
    assert report.checked == 0
    assert report.head_seq is None


def test_verify_streams_a_generator() -> None:
    assert verify_chain(e for e in chain(5)).checked == 5


# --- canonical encoding --------------------------------------------------------------


def test_hash_is_independent_of_key_order_and_whitespace() -> None:
    fields = seal_entry(None, event(0)).fields()
    reordered = dict(reversed(list(fields.items())))
    reordered["details"] = json.loads(json.dumps(fields["details"], indent=4, sort_keys=False))
    reordered["details"] = dict(reversed(list(reordered["details"].items())))
    assert chain_hash(GENESIS_HASH, reordered) == chain_hash(GENESIS_HASH, fields)


def test_hash_is_sha256_of_canonical_json() -> None:
    fields = {"seq": 1, "at": 1.5, "actor": "a", "details": {"b": 1, "a": "é"}}
    expected_payload = {**fields, "at": "1.500000", "prev_hash": GENESIS_HASH, "v": 1}
    data = canonical_json(expected_payload)
    assert (
        data
        == (
            '{"actor":"a","at":"1.500000","details":{"a":"é","b":1},'
            f'"prev_hash":"{GENESIS_HASH}","seq":1,"v":1}}'
        ).encode()
    )
    assert chain_hash(GENESIS_HASH, fields) == hashlib.sha256(data).hexdigest()


def test_time_survives_a_microsecond_round_trip() -> None:
    entry = seal_entry(None, event(0, at=NOW + 0.1234567))
    assert entry.at == round(NOW + 0.1234567, 6)
    # A store that keeps microseconds gives back a float with different low bits.
    reread = replace(entry, at=float(f"{entry.at:.6f}") + 1e-9)
    assert verify_chain([reread]).ok


def test_nan_in_details_cannot_be_sealed() -> None:
    with pytest.raises(ValueError):
        seal_entry(None, event(0, details={"x": float("nan")}))


def test_unencodable_stored_details_reported_not_raised() -> None:
    entries = chain(2)
    entries[1] = replace(entries[1], details={"x": float("nan")})
    report = verify_chain(entries)
    assert report.first_bad_seq == 2
    assert report.problem is not None
    assert report.problem.startswith("entry 2 cannot be encoded")


def test_event_details_are_copied() -> None:
    details: dict[str, Any] = {"a": 1}
    entry = seal_entry(None, event(0, details=details))
    details["a"] = 2
    assert verify_chain([entry]).ok


# --- tampering -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor", "mallory"),
        ("action", "workflows.delete"),
        ("resource", "workflow:other"),
        ("outcome", "denied"),
        ("source_ip", "192.0.2.1"),
        ("source_ip", None),
        ("request_id", "req-x"),
        ("at", NOW + 99),
        ("details", {"version": 999}),
    ],
)
def test_edited_entry_detected(field: str, value: Any) -> None:
    entries = chain(5)
    entries[2] = replace(entries[2], **{field: value})
    report = verify_chain(entries)
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.checked == 2
    assert report.problem == "entry 3 was changed after it was written (hash differs)"
    assert report.head_seq == 2


def test_edit_with_recomputed_hash_breaks_the_next_link() -> None:
    entries = chain(5)
    edited = replace(entries[2], actor="mallory")
    entries[2] = replace(edited, hash=chain_hash(edited.prev_hash, edited.fields()))
    report = verify_chain(entries)
    assert report.first_bad_seq == 4
    assert report.problem is not None
    assert "does not link" in report.problem


def test_forged_hash_detected() -> None:
    entries = chain(3)
    entries[1] = replace(entries[1], hash="f" * 64)
    report = verify_chain(entries)
    assert report.first_bad_seq == 2
    assert report.problem is not None
    assert "hash differs" in report.problem


def test_non_ascii_hash_does_not_crash() -> None:
    entries = chain(2)
    entries[1] = replace(entries[1], hash="é" * 64)
    assert verify_chain(entries).first_bad_seq == 2


def test_deleted_entry_detected_by_sequence_gap() -> None:
    entries = chain(5)
    del entries[2]
    report = verify_chain(entries)
    assert report.first_bad_seq == 4
    assert report.problem == "entry 3 is missing (sequence jumps to 4)"


def test_several_deleted_entries() -> None:
    entries = chain(6)
    del entries[1:4]
    report = verify_chain(entries)
    assert report.problem == "entries 2 to 4 are missing (sequence jumps to 5)"


def test_deleted_first_entry_detected() -> None:
    report = verify_chain(chain(3)[1:])
    assert not report.ok
    assert report.first_bad_seq == 2


def test_deletion_with_renumbering_breaks_the_link() -> None:
    entries = chain(5)
    del entries[2]
    entries = [replace(e, seq=i + 1) for i, e in enumerate(entries)]
    report = verify_chain(entries)
    assert not report.ok
    assert report.first_bad_seq == 3


def test_reordered_entries_detected() -> None:
    entries = chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    report = verify_chain(entries)
    assert not report.ok
    assert report.first_bad_seq == 3


def test_swapped_contents_keeping_seq_detected() -> None:
    entries = chain(5)
    a, b = entries[1], entries[2]
    entries[1] = replace(b, seq=2)
    entries[2] = replace(a, seq=3)
    report = verify_chain(entries)
    assert not report.ok
    assert report.first_bad_seq == 2


def test_duplicated_entry_detected() -> None:
    entries = chain(3)
    entries.insert(2, entries[1])
    report = verify_chain(entries)
    assert report.first_bad_seq == 2
    assert report.problem == "entry 2 is out of order or repeated (expected 3)"


def test_inserted_entry_detected() -> None:
    entries = chain(4)
    forged = seal_entry(entries[1], event(99, actor="mallory"))
    entries.insert(2, forged)  # seq 3 twice: the real 3 no longer links
    report = verify_chain(entries)
    assert report.first_bad_seq == 3
    assert not report.ok


def test_truncated_tail_needs_a_known_head() -> None:
    entries = chain(6)
    head = (entries[-1].seq, entries[-1].hash)
    assert verify_chain(entries[:4]).ok  # indistinguishable from a shorter log …
    report = verify_chain(entries[:4], head=head)  # … unless the head is known
    assert not report.ok
    assert report.first_bad_seq == 5
    assert report.problem == "entries 5 to 6 are missing (the known head is 6)"
    assert verify_chain(entries, head=head).ok


def test_rewritten_chain_detected_by_known_head() -> None:
    entries = chain(4)
    head = (4, entries[-1].hash)
    rewritten: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(4):
        prev = seal_entry(prev, event(i, actor="mallory" if i == 1 else "alice"))
        rewritten.append(prev)
    assert verify_chain(rewritten).ok  # a consistent forgery without a key …
    report = verify_chain(rewritten, head=head)
    assert report.first_bad_seq == 4
    assert report.problem == "entry 4 differs from the known head"


def test_known_head_older_than_the_log_is_checked_in_passing() -> None:
    entries = chain(6)
    assert verify_chain(entries, head=(3, entries[2].hash)).ok
    assert verify_chain(entries, head=(3, "0" * 64)).first_bad_seq == 3


# --- archived prefixes ---------------------------------------------------------------


def test_anchor_allows_verifying_after_archiving() -> None:
    entries = chain(10)
    anchor = (entries[3].seq, entries[3].hash)
    report = verify_chain(entries[4:], anchor=anchor)
    assert report.ok
    assert report.checked == 6
    bad = verify_chain(entries[5:], anchor=anchor)
    assert bad.first_bad_seq == 6


def test_wrong_anchor_hash_detected() -> None:
    entries = chain(5)
    report = verify_chain(entries[2:], anchor=(2, "a" * 64))
    assert report.first_bad_seq == 3
    assert report.problem is not None
    assert "does not link" in report.problem


def test_anchor_with_head_and_no_entries() -> None:
    entries = chain(3)
    report = verify_chain([], anchor=(3, entries[2].hash), head=(3, entries[2].hash))
    assert report.ok
    assert not verify_chain([], anchor=(2, entries[1].hash), head=(3, entries[2].hash)).ok


# --- keyed chain ---------------------------------------------------------------------


def test_keyed_chain_verifies_only_with_the_key() -> None:
    entries = chain(4, key=KEY)
    assert verify_chain(entries, key=KEY).ok
    assert not verify_chain(entries).ok
    assert not verify_chain(entries, key=b"x" * 32).ok
    assert not verify_chain(chain(4), key=KEY).ok


def test_keyed_hash_differs_from_plain() -> None:
    fields = seal_entry(None, event(0)).fields()
    assert chain_hash(GENESIS_HASH, fields, KEY) != chain_hash(GENESIS_HASH, fields)


def test_database_writer_without_key_cannot_rewrite_a_keyed_chain() -> None:
    entries = chain(4, key=KEY)
    rewritten: list[AuditEntry] = []
    prev: AuditEntry | None = None
    for i in range(4):  # the attacker re-chains everything with plain SHA-256
        prev = seal_entry(prev, event(i, actor="mallory" if i == 1 else "alice"))
        rewritten.append(prev)
    report = verify_chain(rewritten, key=KEY)
    assert report.first_bad_seq == 1
    assert entries != rewritten
