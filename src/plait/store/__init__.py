"""Plait store: the ``Store`` interface and its SQL implementation.

Import :mod:`plait.store.sql` or :mod:`plait.store.migrate` for the SQL store; this
package keeps them out of its own import so the interface stays cheap to import.
"""

from plait.store.base import (
    Claim,
    LogLine,
    Page,
    RunFilter,
    RunSnapshot,
    Sealer,
    Store,
    StoredEvent,
    VersionRecord,
)

__all__ = [
    "Claim",
    "LogLine",
    "Page",
    "RunFilter",
    "RunSnapshot",
    "Sealer",
    "Store",
    "StoredEvent",
    "VersionRecord",
]
