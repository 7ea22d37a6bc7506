"""The store interface: the only way the runtime reaches durable state.

Everything the engine needs to survive a crash goes through these calls, in domain
words. Implementations: :class:`plait.store.sql.SqlStore` (SQLite and PostgreSQL, one
SQLAlchemy Core code path with small dialect hooks) and
:class:`plait.testing.MemoryStore` (for fast unit tests). One contract test suite
(``tests/integration/test_store_contract.py``) runs against all three.

Rules every implementation keeps:

* :meth:`Store.commit` is atomic: the run row, step rows, attempt rows and events of
  one transition are written together or not at all, and only if the run's stored
  ``version`` equals ``expected_version`` (else :class:`~plait.errors.ConflictError`).
  The run's ``version`` is then ``expected_version + 1``.
* ``sealed_*`` fields (real secret values) are encrypted at rest with the store's
  :class:`Sealer`; every other field is stored as given.
* Nothing loads a whole table: lists are paged by cursor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from plait.engine.state import AttemptRecord, Event, RunState, StepState


class Sealer(Protocol):
    """Encrypts values at rest (AES-256-GCM in :mod:`plait.security.crypto`)."""

    def seal(self, plaintext: bytes) -> bytes: ...

    def unseal(self, sealed: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """An immutable version of a workflow's source."""

    id: int
    namespace: str
    workflow: str
    version: int
    source: str
    checksum: str
    author: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A step a worker took: ``kind`` is ``execute`` (run an attempt) or ``resume``
    (a waiting step whose timer is due). ``attempt`` is the attempt now running."""

    run_id: str
    step: str
    attempt: int
    kind: str = "execute"


@dataclass(frozen=True, slots=True)
class LogLine:
    run_id: str
    step: str | None
    attempt: int
    stream: str  # "stdout" | "stderr" | "system"
    line: str
    at: float
    id: int = 0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    event: Event


@dataclass(frozen=True, slots=True)
class RunFilter:
    workflow: str | None = None
    namespace: str | None = None
    status: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list, and the cursor of the next (``None`` at the end)."""

    items: list[Any] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    run: RunState
    steps: list[StepState]


class Store(Protocol):
    """Durable state of workflows and runs; also the work queue (DESIGN §3)."""

    # -- workflow versions -------------------------------------------------------------
    def save_version(
        self, namespace: str, workflow: str, source: str, checksum: str, author: str | None
    ) -> VersionRecord:
        """Store a version of a workflow's source; the same checksum returns the existing
        version instead of making a new one."""
        ...

    def get_version(self, version_id: int) -> VersionRecord: ...

    # -- runs ------------------------------------------------------------------------
    def create_run(
        self, run: RunState, steps: Sequence[StepState], events: Sequence[Event]
    ) -> None:
        """Insert a new run with its initial step rows; ``run.version`` is stored as given."""
        ...

    def load_run(self, run_id: str) -> RunSnapshot:
        """The run and all its step rows; raises NotFound."""
        ...

    def commit(
        self,
        run: RunState,
        expected_version: int,
        steps: Sequence[StepState] = (),
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[Event] = (),
        run_changed: bool = True,
    ) -> None:
        """Write one transition atomically (see the module rules). Step rows and attempt
        rows are upserted by (run_id, key) and (run_id, step, attempt). With
        ``run_changed=False`` only the run's version moves (its other fields are kept as
        stored), which makes the common step-only transition cheaper."""
        ...

    def list_runs(self, filter: RunFilter, cursor: str | None, limit: int) -> Page:
        """Runs, newest first, as :class:`RunState` items."""
        ...

    def attempts(self, run_id: str) -> list[AttemptRecord]: ...

    def run_versions(self, run_ids: Sequence[str]) -> dict[str, int]:
        """The stored ``version`` of each run that exists (a cheap staleness check for
        processes that cache runs)."""
        ...

    def request_cancel(self, run_id: str) -> bool:
        """Flag a run for cancellation (the process running it acts on the flag).
        Returns False when the run has already ended."""
        ...

    # -- the queue ---------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        now: float,
        lease_until: float,
        limit: int,
        run_id: str | None = None,
        *,
        queues: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` steps that are due: ``queued`` or ``retrying`` with
        ``available_at`` unset or ≤ now (kind ``execute``: the step becomes ``running``,
        its ``attempt`` is increased and a running attempt row with the lease is
        inserted), and ``waiting`` steps whose ``available_at`` ≤ now (kind ``resume``).
        Oldest first. Never returns one step to two callers.

        Only steps of ``run_id`` when given (a local ``plait run`` drives its own run and
        ignores routing). Otherwise, given ``queues`` (a worker's), only steps of those
        queues whose ``runs_on`` tags are all in ``tags``, highest ``priority`` first,
        then oldest; without ``queues``, steps of any queue."""
        ...

    def renew_leases(self, worker: str, lease_until: float) -> int:
        """Extend the lease of every running attempt held by ``worker``."""
        ...

    def expired_attempts(self, now: float, run_id: str | None = None) -> list[AttemptRecord]:
        """Running attempts whose lease ended before ``now`` (their worker is gone)."""
        ...

    def next_due(self, run_id: str | None = None) -> float | None:
        """The earliest ``available_at`` of a retrying or waiting step (for timers)."""
        ...

    # -- logs and events ---------------------------------------------------------------
    def append_logs(self, lines: Sequence[LogLine]) -> None: ...

    def read_logs(
        self, run_id: str, after_id: int = 0, limit: int = 1000, step: str | None = None
    ) -> list[LogLine]: ...

    def read_events(
        self, after_id: int = 0, limit: int = 1000, run_id: str | None = None
    ) -> list[StoredEvent]: ...

    def close(self) -> None: ...
