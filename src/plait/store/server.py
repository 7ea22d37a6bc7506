"""The server's records beside the run store: deployed workflows and their versions,
labels, idempotency keys, and (through its parts) schedules, secrets, connections,
published events, and concurrency admission.

One SQLAlchemy Core code path over the :class:`~plait.store.sql.SqlStore`'s engine,
writing through the store's own write path so SQLite keeps its single writer. Driver
errors arrive wrapped (StoreError, ConflictError for a unique key lost).

Deploying is what makes a version current. ``SqlStore.save_version`` (used by
``plait run``) only records versions, so running a local file on the server's store
never changes what the server runs. A deployed name is unique across namespaces: the
API addresses workflows by name, and the namespace is their RBAC scope.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from plait.errors import ConflictError, NotFound, StoreError
from plait.store.base import Page, VersionRecord
from plait.store.server_alerts import AlertStore
from plait.store.server_concurrency import ConcurrencyStore
from plait.store.server_connections import ConnectionStore
from plait.store.server_insights import InsightStore
from plait.store.server_logs import LogSearchStore
from plait.store.server_records import (
    GLOBAL_NAMESPACE,
    FireRecord,
    ScheduleRecord,
    SecretRecord,
    WorkflowRecord,
)
from plait.store.server_secrets import SecretStore
from plait.store.server_triggers import TriggerStore
from plait.store.server_workers import WorkerStore
from plait.store.sql import SqlStore
from plait.store.tables import (
    deployments,
    idempotency_keys,
    runs,
    schedules,
    workflow_labels,
    workflow_versions,
    workflows,
)

ScheduleTriggers = Sequence[Mapping[str, Any]]


class ServerStore(
    TriggerStore,
    SecretStore,
    ConnectionStore,
    ConcurrencyStore,
    AlertStore,
    WorkerStore,
    LogSearchStore,
    InsightStore,
):
    """Deployments, versions and idempotency (here); schedules, fires and events
    (:class:`TriggerStore`); secrets (:class:`SecretStore`); connections
    (:class:`ConnectionStore`); concurrency admission (:class:`ConcurrencyStore`);
    alert rules, alerts and their notifications (:class:`AlertStore`); the worker
    registry (:class:`WorkerStore`); log search (:class:`LogSearchStore`); the history
    the insights read (:class:`InsightStore`)."""

    def __init__(self, sql_store: SqlStore, clock: Callable[[], float] = time.time) -> None:
        super().__init__(sql_store, clock)

    # -- deploying -----------------------------------------------------------------------
    def deploy(
        self,
        namespace: str,
        name: str,
        source: str,
        checksum: str,
        author: str | None,
        *,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        schedules: ScheduleTriggers | None = None,
    ) -> tuple[VersionRecord, bool]:
        """Make ``source`` the current version of ``name``; ``created`` is False when the
        text equals the current version (nothing changes). Given ``schedules`` (the
        plan's trigger mappings) are synced in the same transaction.

        A changed text becomes a new version, except that the newest version is reused
        when it holds exactly this text (saved by ``plait run`` but never deployed), so
        history stays linear: redeploying an old text makes a new version, as a
        rollback would not.
        """
        now = self._clock()
        try:
            with self._write() as conn:
                wf_id = self._claim_name(conn, namespace, name, now)
                current = conn.execute(
                    select(workflows.c.current_version_id).where(workflows.c.id == wf_id)
                ).scalar()
                version_id, created = self._pick_version(
                    conn, wf_id, current, source, checksum, author, now
                )
                if created:
                    self._make_current(conn, wf_id, version_id, description, labels, now)
                if schedules is not None:
                    self._sync(conn, name, namespace, version_id, schedules, now)
        except ConflictError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # lost a race for the name
                raise ConflictError(
                    f"workflow {name!r} was deployed concurrently in another namespace"
                ) from exc.__cause__
            raise
        return self._sql.get_version(version_id), created

    def _claim_name(self, conn: Connection, namespace: str, name: str, now: float) -> int:
        """The workflow's id, its deployment row created; the name must be free or ours."""
        d = deployments.c
        taken = conn.execute(select(d.namespace).where(d.name == name)).scalar()
        if taken is not None and taken != namespace:
            raise ConflictError(
                f"workflow {name!r} already exists in namespace {taken!r}; "
                "workflow names are unique across namespaces"
            )
        row = {"namespace": namespace, "name": name, "created_at": now, "updated_at": now}
        conn.execute(
            self._insert(workflows).on_conflict_do_nothing(index_elements=["namespace", "name"]),
            row,
        )
        query = select(workflows.c.id).where(
            workflows.c.namespace == namespace, workflows.c.name == name
        )
        wf_id: int = conn.execute(query.with_for_update()).scalar_one()
        if taken is None:
            conn.execute(
                deployments.insert(),
                {
                    "workflow_id": wf_id,
                    "name": name,
                    "namespace": namespace,
                    "description": "",
                    "created_at": now,
                    "updated_at": now,
                },
            )
        return wf_id

    def _pick_version(
        self,
        conn: Connection,
        wf_id: int,
        current: int | None,
        source: str,
        checksum: str,
        author: str | None,
        now: float,
    ) -> tuple[int, bool]:
        wv = workflow_versions.c
        if current is not None:
            found = conn.execute(select(wv.checksum).where(wv.id == current)).scalar()
            if found == checksum:
                return current, False
        latest = conn.execute(
            select(wv.id, wv.version, wv.checksum)
            .where(wv.workflow_id == wf_id)
            .order_by(wv.version.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.checksum == checksum:
            return int(latest.id), True
        row = {
            "workflow_id": wf_id,
            "version": (latest.version if latest else 0) + 1,
            "source": source,
            "checksum": checksum,
            "author": author,
            "created_at": now,
        }
        new_id: int = conn.execute(workflow_versions.insert().returning(wv.id), row).scalar_one()
        return new_id, True

    def _make_current(
        self,
        conn: Connection,
        wf_id: int,
        version_id: int,
        description: str | None,
        labels: Mapping[str, str] | None,
        now: float,
    ) -> None:
        conn.execute(
            update(workflows)
            .where(workflows.c.id == wf_id)
            .values(current_version_id=version_id, updated_at=now)
        )
        values: dict[str, Any] = {"updated_at": now}
        if description is not None:
            values["description"] = description
        conn.execute(update(deployments).where(deployments.c.workflow_id == wf_id).values(**values))
        if labels is not None:
            conn.execute(workflow_labels.delete().where(workflow_labels.c.workflow_id == wf_id))
            rows = [
                {"workflow_id": wf_id, "key": str(k), "value": str(v)} for k, v in labels.items()
            ]
            if rows:
                conn.execute(workflow_labels.insert(), rows)

    def rollback(
        self,
        name: str,
        number: int,
        *,
        description: str | None = None,
        labels: Mapping[str, str] | None = None,
        schedules: ScheduleTriggers | None = None,
    ) -> VersionRecord:
        """Make version ``number`` current again (no new version is written). The
        caller passes that version's description, labels and schedule triggers."""
        now = self._clock()
        with self._write() as conn:
            wf_id, namespace = self._deployed(conn, name)
            wv = workflow_versions.c
            version_id = conn.execute(
                select(wv.id).where(wv.workflow_id == wf_id, wv.version == number)
            ).scalar()
            if version_id is None:
                raise NotFound(f"workflow {name!r} has no version {number}")
            self._make_current(conn, wf_id, version_id, description, labels, now)
            if schedules is not None:
                self._sync(conn, name, namespace, version_id, schedules, now)
        return self._sql.get_version(version_id)

    def _deployed(self, conn: Connection, name: str) -> tuple[int, str]:
        row = conn.execute(
            select(deployments.c.workflow_id, deployments.c.namespace).where(
                deployments.c.name == name
            )
        ).first()
        if row is None:
            raise NotFound(f"workflow {name!r} not found")
        return int(row.workflow_id), str(row.namespace)

    # -- reading -------------------------------------------------------------------------
    def get_workflow(self, name: str) -> WorkflowRecord:
        query = _workflow_query().where(deployments.c.name == name)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                raise NotFound(f"workflow {name!r} not found")
            labels = _labels(conn, [row["workflow_id"]])
        return _workflow_record(row, labels.get(row["workflow_id"], {}))

    def current_version(self, name: str) -> VersionRecord:
        """The version a new run of ``name`` starts on."""
        return self._sql.get_version(self.get_workflow(name).version_id)

    def list_workflows(
        self,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        search: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        *,
        namespaces: Collection[str] | None = None,
    ) -> Page:
        """Deployed workflows by name. ``namespaces`` restricts to those the caller may
        read (None: all); ``labels`` must all match; ``search`` looks in the name and
        description, case-insensitively."""
        if namespaces is not None and not namespaces:
            return Page([], None)
        d = deployments.c
        query = _workflow_query().order_by(d.name).limit(limit + 1)
        if namespace is not None:
            query = query.where(d.namespace == namespace)
        if namespaces is not None:
            query = query.where(d.namespace.in_(sorted(namespaces)))
        for key, value in (labels or {}).items():
            lc = workflow_labels.c
            query = query.where(
                exists().where(lc.workflow_id == d.workflow_id, lc.key == key, lc.value == value)
            )
        if search:
            pattern = "%" + _escape_like(search.lower()) + "%"
            query = query.where(
                or_(
                    func.lower(d.name).like(pattern, escape="\\"),
                    func.lower(d.description).like(pattern, escape="\\"),
                )
            )
        if cursor:
            query = query.where(d.name > _decode_name(cursor))
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
            found = _labels(conn, [r["workflow_id"] for r in rows[:limit]])
        items = [_workflow_record(r, found.get(r["workflow_id"], {})) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, _encode_name(items[-1].name) if more and items else None)

    def namespaces(self) -> list[str]:
        """The namespaces that hold deployed workflows (for RBAC-filtered listings)."""
        with self._read() as conn:
            query = select(deployments.c.namespace).distinct().order_by(deployments.c.namespace)
            return [str(n) for n in conn.execute(query).scalars()]

    def versions(self, name: str) -> list[VersionRecord]:
        """Every version of ``name``, newest first."""
        wv = workflow_versions.c
        with self._read() as conn:
            wf_id, namespace = self._deployed(conn, name)
            rows = (
                conn.execute(
                    select(workflow_versions)
                    .where(wv.workflow_id == wf_id)
                    .order_by(wv.version.desc())
                )
                .mappings()
                .all()
            )
        return [_version(r, namespace, name) for r in rows]

    def version(self, name: str, number: int) -> VersionRecord:
        wv = workflow_versions.c
        with self._read() as conn:
            wf_id, namespace = self._deployed(conn, name)
            row = (
                conn.execute(
                    select(workflow_versions).where(wv.workflow_id == wf_id, wv.version == number)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"workflow {name!r} has no version {number}")
        return _version(row, namespace, name)

    # -- idempotency ---------------------------------------------------------------------
    def remember_idempotency(self, scope: str, key: str, run_id: str) -> str | None:
        """Record that ``key`` in ``scope`` started ``run_id``. Returns None when this
        caller is the first (go ahead), else the run id the first caller recorded: the
        insert is atomic, so of two concurrent callers exactly one gets None."""
        row = {"scope": scope, "key": key, "run_id": run_id, "created_at": self._clock()}
        ik = idempotency_keys.c
        with self._write() as conn:
            stmt = self._insert(idempotency_keys).on_conflict_do_nothing(
                index_elements=["scope", "key"]
            )
            # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT.
            if conn.execute(stmt.returning(ik.scope), row).first() is not None:
                return None
            existing = conn.execute(
                select(ik.run_id).where(ik.scope == scope, ik.key == key)
            ).scalar()
        return str(existing or "")

    def forget_idempotency(self, scope: str, key: str) -> None:
        """Drop a key whose run could not start, so a corrected retry may use it."""
        ik = idempotency_keys.c
        with self._write() as conn:
            conn.execute(idempotency_keys.delete().where(ik.scope == scope, ik.key == key))

    def prune_idempotency(self, before: float) -> int:
        """Forget keys recorded before ``before`` (epoch seconds); returns how many."""
        with self._write() as conn:
            result = conn.execute(
                idempotency_keys.delete().where(idempotency_keys.c.created_at < before)
            )
            return int(result.rowcount)

    def seen_delivery(self, key: str) -> bool:
        """True when the webhook delivery ``key`` was seen before (and records it now)."""
        return self.remember_idempotency("webhook", key, "") is not None


# -- queries and rows ------------------------------------------------------------------
def _workflow_query() -> Any:
    """Deployment, current version and, per row, index lookups for the newest run and
    the next schedule fire (``runs (workflow, created_at)``, ``schedules (workflow)``)."""
    d, wv, r = deployments.c, workflow_versions.c, runs.c

    def newest(column: Any) -> Any:
        return (
            select(column)
            .where(r.workflow == d.name, r.namespace == d.namespace)
            .order_by(r.created_at.desc())
            .limit(1)
            .scalar_subquery()
        )

    next_fire = (
        select(func.min(schedules.c.next_fire))
        .where(schedules.c.workflow == d.name)
        .scalar_subquery()
    )
    return (
        select(
            d.workflow_id,
            d.name,
            d.namespace,
            d.description,
            d.created_at,
            d.updated_at,
            wv.id.label("version_id"),
            wv.version,
            wv.checksum,
            wv.author,
            newest(r.id).label("last_run_id"),
            newest(r.status).label("last_run_status"),
            newest(r.created_at).label("last_run_at"),
            next_fire.label("next_fire"),
        )
        .select_from(deployments)
        .join(workflows, workflows.c.id == d.workflow_id)
        .join(workflow_versions, and_(wv.id == workflows.c.current_version_id))
    )


def _labels(conn: Connection, ids: Sequence[int]) -> dict[int, dict[str, str]]:
    if not ids:
        return {}
    lc = workflow_labels.c
    rows = conn.execute(
        select(lc.workflow_id, lc.key, lc.value).where(lc.workflow_id.in_(list(ids)))
    ).all()
    found: dict[int, dict[str, str]] = {}
    for wf_id, key, value in rows:
        found.setdefault(int(wf_id), {})[key] = value
    return found


def _workflow_record(row: Mapping[Any, Any], labels: Mapping[str, str]) -> WorkflowRecord:
    return WorkflowRecord(
        name=row["name"],
        namespace=row["namespace"],
        description=row["description"],
        labels=dict(sorted(labels.items())),
        version=row["version"],
        version_id=row["version_id"],
        checksum=row["checksum"],
        author=row["author"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_run_id=row["last_run_id"],
        last_run_status=row["last_run_status"],
        last_run_at=row["last_run_at"],
        next_fire=row["next_fire"],
    )


def _version(row: Mapping[Any, Any], namespace: str, name: str) -> VersionRecord:
    return VersionRecord(
        id=row["id"],
        namespace=namespace,
        workflow=name,
        version=row["version"],
        source=row["source"],
        checksum=row["checksum"],
        author=row["author"],
        created_at=row["created_at"],
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _encode_name(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_name(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError) as exc:
        raise StoreError(f"invalid cursor {cursor!r}") from exc


__all__ = [
    "GLOBAL_NAMESPACE",
    "FireRecord",
    "ScheduleRecord",
    "SecretRecord",
    "ServerStore",
    "WorkflowRecord",
]
