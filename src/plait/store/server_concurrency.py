"""Concurrency admission in the store: count a key's runs and write the outcome in one
transaction, under a lock on the key.

The rules (which runs start, wait or are skipped) are pure code in
:mod:`plait.runtime.concurrency`; they reach this part as a callback that runs inside
the transaction, on what the transaction saw. So of two processes starting runs with
one key at the same moment, the second always sees the first's run: SQLite has a
single writer (``BEGIN IMMEDIATE``), and on PostgreSQL the transaction first takes an
advisory lock on a hash of the namespace and key (``pg_advisory_xact_lock``, released
at commit). The lock covers only admission — counting and writing a run's first
transition — never the run's later commits, which only ever free slots.

A run's state per key is its row: ``concurrency_key`` is set when the run is created
and never changes; ``running`` and ``waiting`` runs are active; ``queued`` runs with a
key are held (an admitted run is written already started, in the same transaction, so
it is never seen queued).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from plait.engine.state import RunState, RunStatus
from plait.runtime.concurrency import AdmitHeld, BuildNew, KeyRuns, RunRecords
from plait.store import codec
from plait.store.base import RunSnapshot
from plait.store.server_records import StorePart
from plait.store.tables import events, runs, steps

_ACTIVE = (str(RunStatus.RUNNING), str(RunStatus.WAITING))
_HELD = str(RunStatus.QUEUED)
#: columns a run's first transition never changes (left out of the admission UPDATE)
_FIXED = ("id", "workflow", "namespace", "created_at", "parent_run_id", "concurrency_key")


def lock_id(namespace: str, key: str) -> int:
    """A signed 64-bit id for ``pg_advisory_xact_lock``, stable across processes."""
    digest = hashlib.sha256(f"plait-concurrency\0{namespace}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ConcurrencyStore(StorePart):
    """Admission of runs that declare ``concurrency`` (see the module docstring); the
    :class:`~plait.runtime.concurrency.SlotStore` of the run service."""

    def create_limited_run(self, namespace: str, key: str, build: BuildNew) -> RunRecords:
        """Insert the run ``build`` makes from the key's runs, atomically with counting
        them. Raises ConflictError when the run's id exists (a fire already started)."""
        with self._write() as conn:
            self._lock_key(conn, namespace, key)
            records = build(self._key_runs(conn, namespace, key))
            self._insert_run(conn, records)
        return records

    def start_held_runs(
        self, namespace: str, key: str, admit: AdmitHeld, batch: int = 50
    ) -> list[RunState]:
        """Start held runs of the key, oldest first, while ``admit`` gives their start;
        stops at the first it refuses (FIFO). Returns the runs started. Safe to call
        from any number of processes at once: each sees the others' admissions."""
        started: list[RunState] = []
        with self._write() as conn:
            self._lock_key(conn, namespace, key)
            seen = self._key_runs(conn, namespace, key)
            for run_id in self._held(conn, namespace, key, batch):
                snap = self._snapshot(conn, run_id)
                if snap is None or snap.run.status is not RunStatus.QUEUED:
                    continue
                records = admit(snap, seen)
                if records is None:
                    break
                if self._update_run(conn, records, snap.run.version):
                    started.append(records.run)
                    seen = seen.admitted(run_id)
        return started

    def held_keys(self, limit: int = 500) -> list[tuple[str, str]]:
        """``(namespace, key)`` of every key with held runs (for the periodic sweep that
        releases slots whose run-end event was missed)."""
        r = runs.c
        query = (
            select(r.namespace, r.concurrency_key)
            .where(r.status == _HELD, r.concurrency_key.is_not(None))
            .distinct()
            .limit(limit)
        )
        with self._read() as conn:
            return [(str(ns), str(key)) for ns, key in conn.execute(query)]

    # -- inside the transaction ------------------------------------------------------------
    def _lock_key(self, conn: Connection, namespace: str, key: str) -> None:
        # SQLite needs nothing: the write transaction (BEGIN IMMEDIATE) is the only one.
        if self._hooks.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(lock_id(namespace, key))))

    def _key_runs(self, conn: Connection, namespace: str, key: str) -> KeyRuns:
        r = runs.c
        query = (
            select(r.id, r.status, r.cancel_requested)
            .where(r.concurrency_key == key, r.namespace == namespace)
            .where(r.status.in_([*_ACTIVE, _HELD]))
            .order_by(r.created_at, r.id)
        )
        active: list[str] = []
        cancelling: set[str] = set()
        held = 0
        for run_id, status, cancel_requested in conn.execute(query):
            if status == _HELD:
                held += 1
                continue
            active.append(run_id)
            if cancel_requested:
                cancelling.add(run_id)
        return KeyRuns(tuple(active), frozenset(cancelling), held)

    def _held(self, conn: Connection, namespace: str, key: str, batch: int) -> list[str]:
        r = runs.c
        query = (
            select(r.id)
            .where(r.concurrency_key == key, r.namespace == namespace, r.status == _HELD)
            .order_by(r.created_at, r.id)
            .limit(batch)
        )
        return [str(run_id) for run_id in conn.execute(query).scalars()]

    def _snapshot(self, conn: Connection, run_id: str) -> RunSnapshot | None:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        if row is None:
            return None
        step_rows = conn.execute(
            select(steps).where(steps.c.run_id == run_id).order_by(steps.c.key)
        ).mappings()
        return RunSnapshot(
            run=codec.run_from_row(row, self._sealer),
            steps=[codec.step_from_row(s, self._sealer) for s in step_rows],
        )

    def _insert_run(self, conn: Connection, records: RunRecords) -> None:
        run = records.run
        conn.execute(runs.insert(), codec.run_row(run, self._sealer))
        self._write_children(conn, records, upsert=False)

    def _update_run(self, conn: Connection, records: RunRecords, expected: int) -> bool:
        """The held run's start, if nobody changed it since it was read (a cancel)."""
        run = records.run
        run.version = expected + 1
        row = {k: v for k, v in codec.run_row(run, self._sealer).items() if k not in _FIXED}
        done = conn.execute(
            update(runs).where(runs.c.id == run.id, runs.c.version == expected).values(**row)
        )
        if done.rowcount != 1:
            run.version = expected
            return False
        self._write_children(conn, records, upsert=True)
        return True

    def _write_children(self, conn: Connection, records: RunRecords, *, upsert: bool) -> None:
        run_id = records.run.id
        step_rows = [codec.step_row(run_id, s, self._sealer) for s in records.steps]
        if step_rows:
            stmt = self._insert(steps)
            if upsert:  # a for_each at the start adds item rows beside the existing ones
                stmt = stmt.on_conflict_do_update(
                    index_elements=["run_id", "key"],
                    set_={
                        c.name: stmt.excluded[c.name]
                        for c in steps.c
                        if c.name not in ("run_id", "key")
                    },
                )
            conn.execute(stmt, step_rows)
            queued = any(row["status"] == "queued" for row in step_rows)
            if queued and self._hooks.name == "postgresql":  # wake workers on commit
                conn.execute(select(func.pg_notify("plait_ready", "")))
        if records.events:
            conn.execute(events.insert(), [codec.event_row(e) for e in records.events])


__all__ = ["ConcurrencyStore", "lock_id"]
