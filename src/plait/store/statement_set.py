"""The set of prepared statements a :class:`~plait.store.sql.SqlStore` runs, by name.

Compiled once per store from :mod:`plait.store.statements` (which imports SQLAlchemy),
or read back from the SQLite statements kept in :mod:`plait.store._sqlite_statements`
(which does not): this module imports neither, so ``plait run`` on SQLite starts
without SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait.store.prepared import Prepared

if TYPE_CHECKING:
    from plait.store.lite import StoreHooks


class StatementSet:
    """The statements of a run's life, compiled once per store (see ``prepared``)."""

    #: the names of the statements, in order (what :mod:`plait.store.lite` keeps)
    NAMES = (
        "update_run", "bump_run", "insert_run", "insert_steps", "upsert_steps",
        "upsert_attempts", "insert_events", "insert_logs", "claim", "claim_parts",
        "claim_run", "claim_queue", "start_steps", "hold_timers", "renew", "load_run", "load_steps",
        "insert_workflow", "workflow_id", "version_by_checksum", "max_version",
        "insert_version", "get_version", "expired", "expired_run", "next_due",
        "next_due_run", "run_attempts", "run_version", "request_cancel", "run_exists",
        "read_logs", "read_step_logs", "read_events", "read_run_events",
    )  # fmt: skip

    @classmethod
    def compile(cls, hooks: StoreHooks) -> StatementSet:
        from plait.store.statements import compile_all

        q = cls()
        for name, prepared in compile_all(hooks).items():
            setattr(q, name, prepared)
        return q

    @classmethod
    def from_specs(cls, specs: dict[str, Any]) -> StatementSet:
        q = cls()
        for name in cls.NAMES:
            spec = specs[name]
            if isinstance(spec, list):
                setattr(q, name, [Prepared.from_spec(s) for s in spec])
            else:
                setattr(q, name, Prepared.from_spec(spec))
        return q

    def specs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.NAMES:
            value = getattr(self, name)
            out[name] = [p.spec() for p in value] if isinstance(value, list) else value.spec()
        return out

    update_run: Prepared
    bump_run: Prepared
    insert_run: Prepared
    insert_steps: Prepared
    upsert_steps: Prepared
    upsert_attempts: Prepared
    insert_events: Prepared
    insert_logs: Prepared
    claim: Prepared
    claim_parts: list[Prepared]
    claim_run: Prepared
    claim_queue: Prepared
    start_steps: Prepared
    hold_timers: Prepared
    renew: Prepared
    load_run: Prepared
    load_steps: Prepared
    insert_workflow: Prepared
    workflow_id: Prepared
    version_by_checksum: Prepared
    max_version: Prepared
    insert_version: Prepared
    get_version: Prepared
    expired: Prepared
    expired_run: Prepared
    next_due: Prepared
    next_due_run: Prepared
    run_attempts: Prepared
    run_version: Prepared
    request_cancel: Prepared
    run_exists: Prepared
    read_logs: Prepared
    read_step_logs: Prepared
    read_events: Prepared
    read_run_events: Prepared
    #: PostgreSQL only: a transition in one statement (see ``statements._pg_commit``)
    commit_changed: Prepared | None = None
    commit_bump: Prepared | None = None
