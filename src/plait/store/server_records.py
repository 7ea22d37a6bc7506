"""The records the server store hands out, and the plumbing its parts share.

Frozen dataclasses in domain words: routes and the trigger service never see rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from plait.store.sql import SqlStore
    from plait.triggers.schedule import Schedule

#: The namespace of secrets every namespace can use (looked up after the workflow's own).
GLOBAL_NAMESPACE = "*"


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """A deployed workflow: what the list and the detail page show at a glance.

    ``last_run_*`` is the newest run of the workflow (any version); ``next_fire`` the
    earliest next fire of its schedules (epoch seconds), ``None`` without schedules.
    """

    name: str
    namespace: str
    description: str
    labels: Mapping[str, str]
    version: int
    version_id: int
    checksum: str
    author: str | None
    created_at: float
    updated_at: float
    last_run_id: str | None = None
    last_run_status: str | None = None
    last_run_at: float | None = None
    next_fire: float | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """One ``schedule`` trigger of a deployed workflow and where the scheduler is in it.

    ``id`` is ``{workflow}/{hash of cron and timezone}``: stable across redeploys that
    keep the cron, so ``last_fire`` (and with it the catch-up window) survives them.
    """

    id: str
    workflow: str
    namespace: str
    version_id: int
    position: int
    cron: str
    timezone: str
    catch_up: str
    max_catch_up: int
    inputs: Mapping[str, Any]
    created_at: float
    updated_at: float
    last_fire: float | None = None
    next_fire: float | None = None
    missed_count: int = 0
    last_missed: float | None = None

    @property
    def schedule(self) -> Schedule:
        """The pure schedule (:mod:`plait.triggers.schedule`) for ``due_fires``."""
        from plait.triggers.schedule import Schedule

        return Schedule(
            self.cron,
            self.timezone,
            self.catch_up,  # type: ignore[arg-type]
            self.max_catch_up,
        )

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, UTC)

    @property
    def last(self) -> datetime | None:
        return None if self.last_fire is None else datetime.fromtimestamp(self.last_fire, UTC)


@dataclass(frozen=True, slots=True)
class FireRecord:
    """A fire (``status`` ``fired``, with its run) or a recorded miss (``missed``)."""

    fire_key: str
    schedule_id: str
    workflow: str
    fire_time: float
    run_id: str | None
    status: str
    recorded_at: float


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A secret's metadata; the value never leaves the store except to run steps."""

    namespace: str
    name: str
    created_at: float
    updated_at: float
    created_by: str | None = None
    updated_by: str | None = None


class StorePart:
    """What every part of the server store shares: the SQL store's engine and write
    path (one writer on SQLite), its sealer and a clock."""

    def __init__(self, sql_store: SqlStore, clock: Callable[[], float] = time.time) -> None:
        self._sql = sql_store
        self._hooks = sql_store._hooks
        self._sealer = sql_store._sealer
        self._clock = clock

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; driver errors arrive as StoreError/ConflictError."""
        with self._hooks.write() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._hooks.read() as conn:
            yield conn

    def _insert(self, table: Any) -> Any:
        return self._hooks.insert(table)


__all__ = [
    "GLOBAL_NAMESPACE",
    "FireRecord",
    "ScheduleRecord",
    "SecretRecord",
    "StorePart",
    "WorkflowRecord",
]
