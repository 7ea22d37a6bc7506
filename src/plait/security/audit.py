"""A hash-chained, append-only audit log: the records and their verification.

Each entry's hash covers its own fields and the previous entry's hash, so changing,
removing or reordering any entry breaks every link after it, and
:func:`verify_chain` (behind ``plait audit verify``) reports the first broken one.

Threat model:

* **Accidental damage and careless edits** (a restored partial backup, a hand-run
  ``UPDATE``): always detected.
* **Someone who can write the database but not read the server's key.** With a key
  (``key=…``, from the environment or a key file, never stored in the database) each
  hash is an HMAC-SHA-256, so the writer cannot compute a valid hash for an edited or
  inserted entry, nor re-chain the entries after a deleted one. Without a key the
  chain is plain SHA-256 and such a writer *can* rewrite every hash from the edit
  onward; then only an anchor kept outside the database (a head hash exported to logs
  or a SIEM, passed back as ``head``) reveals it.
* **Cutting off the newest entries** leaves a valid shorter chain, keyed or not;
  comparing with a known ``head`` (sequence number and hash) detects it.
* **Someone holding the key and database access** can forge anything; database
  grants that forbid ``UPDATE`` and ``DELETE`` on the audit table are the
  complementary control. The chain provides integrity, not confidentiality.

The hash is over a canonical JSON encoding (sorted keys, no whitespace, UTF-8, the
time as a fixed six-decimal string) so a store that reorders JSON keys (PostgreSQL
``jsonb``) or re-serialises the entry cannot change it. ``details`` should hold only
JSON values: strings, integers, booleans, null, lists and objects.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

GENESIS_HASH = "0" * 64
_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, before it is sealed into the chain.

    ``at`` is epoch seconds; it is kept to the microsecond, which every store holds
    exactly. ``outcome`` is a short word such as ``success``, ``denied`` or ``error``.
    """

    at: float
    actor: str
    action: str
    resource: str
    outcome: str
    source_ip: str | None = None
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One sealed entry; ``hash`` covers every other field, ``prev_hash`` included."""

    seq: int
    at: float
    actor: str
    action: str
    resource: str
    outcome: str
    source_ip: str | None
    request_id: str | None
    details: Mapping[str, Any] = field(hash=False)
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, Any]:
        """The hashed fields other than ``prev_hash`` (which :func:`chain_hash` adds)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome,
            "source_ip": self.source_ip,
            "request_id": self.request_id,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of :func:`verify_chain`.

    ``head_seq`` and ``head_hash`` describe the last good entry: export them and pass
    them back as ``head`` next time to detect a cut-off tail.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head_seq: int | None = None
    head_hash: str | None = None


def _same(a: str, b: str) -> bool:
    """Constant-time equality that also works on non-ASCII text read from a tampered row."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """One byte string per value, whatever the key order or spacing it came with."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _normalise_at(at: float) -> str:
    # Six decimals: a float that went through a microsecond timestamp column comes back
    # with different low bits but the same six-decimal text.
    return f"{at:.6f}"


def chain_hash(prev_hash: str, entry_fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """The hash of an entry: SHA-256 (or HMAC-SHA-256 under ``key``) of its fields
    and ``prev_hash`` in canonical JSON; 64 lowercase hex characters.
    """
    payload = dict(entry_fields)
    payload["at"] = _normalise_at(float(payload["at"]))
    payload["prev_hash"] = prev_hash
    payload["v"] = _FORMAT_VERSION
    data = canonical_json(payload)
    if key is not None:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def seal_entry(prev: AuditEntry | None, event: AuditEvent, key: bytes | None = None) -> AuditEntry:
    """The next entry of the chain after ``prev`` (None for the first entry).

    The store appends entries one at a time under a lock (or a unique ``seq``
    constraint with retry), so two writers cannot both extend the same ``prev``.
    """
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS_HASH if prev is None else prev.hash
    unsealed = AuditEntry(
        seq=seq,
        at=round(event.at, 6),
        actor=event.actor,
        action=event.action,
        resource=event.resource,
        outcome=event.outcome,
        source_ip=event.source_ip,
        request_id=event.request_id,
        details=dict(event.details),
        prev_hash=prev_hash,
        hash="",
    )
    return replace(unsealed, hash=chain_hash(prev_hash, unsealed.fields(), key))


def verify_chain(
    entries: Iterable[AuditEntry],
    key: bytes | None = None,
    *,
    anchor: tuple[int, str] | None = None,
    head: tuple[int, str] | None = None,
) -> VerifyReport:
    """Check a chain in ``seq`` order and report the first entry that breaks it.

    ``anchor`` is ``(seq, hash)`` of the entry just before the first one given, when
    older entries were archived; without it the chain must start at ``seq`` 1.
    ``head`` is the last ``(seq, hash)`` known from outside the database. Entries are
    streamed, so memory does not grow with the log.
    """
    expected_seq, prev_hash = (1, GENESIS_HASH) if anchor is None else (anchor[0] + 1, anchor[1])
    checked = 0
    last: AuditEntry | None = None
    for entry in entries:
        problem = _entry_problem(entry, expected_seq, prev_hash, key) or _head_problem(entry, head)
        if problem is not None:
            return _bad(checked, entry.seq, problem, last)
        checked += 1
        last = entry
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    have = expected_seq - 1  # the last seq seen, or the anchor's
    if head is not None and have < head[0]:
        problem = f"entries {have + 1} to {head[0]} are missing (the known head is {head[0]})"
        return _bad(checked, have + 1, problem, last)
    return VerifyReport(
        ok=True,
        checked=checked,
        head_seq=None if last is None else last.seq,
        head_hash=None if last is None else last.hash,
    )


def _entry_problem(
    entry: AuditEntry, expected_seq: int, prev_hash: str, key: bytes | None
) -> str | None:
    """Why ``entry`` cannot follow the entries before it, or None if it can."""
    if entry.seq < expected_seq:
        return f"entry {entry.seq} is out of order or repeated (expected {expected_seq})"
    if entry.seq > expected_seq:
        missing = (
            f"entry {expected_seq} is missing"
            if entry.seq == expected_seq + 1
            else f"entries {expected_seq} to {entry.seq - 1} are missing"
        )
        return f"{missing} (sequence jumps to {entry.seq})"
    if not _same(entry.prev_hash, prev_hash):
        return f"entry {entry.seq} does not link to the entry before it (prev_hash differs)"
    try:
        expected = chain_hash(entry.prev_hash, entry.fields(), key)
    except (TypeError, ValueError) as exc:
        return f"entry {entry.seq} cannot be encoded: {exc}"
    if not _same(entry.hash, expected):
        return f"entry {entry.seq} was changed after it was written (hash differs)"
    return None


def _head_problem(entry: AuditEntry, head: tuple[int, str] | None) -> str | None:
    """A problem if ``entry`` is the known head but its hash is not the known one."""
    if head is None or entry.seq != head[0] or _same(entry.hash, head[1]):
        return None
    return f"entry {entry.seq} differs from the known head"


def _bad(checked: int, seq: int, problem: str, last: AuditEntry | None) -> VerifyReport:
    return VerifyReport(
        ok=False,
        checked=checked,
        first_bad_seq=seq,
        problem=problem,
        head_seq=None if last is None else last.seq,
        head_hash=None if last is None else last.hash,
    )
