"""The errors of ``plait backup``: what went wrong decides the exit code.

:class:`BadBackup` (exit 2) is bad input — a destination that does not exist, a backup
whose manifest is missing or whose files do not match their checksums, a restore that
would overwrite data without ``--force``. :class:`BackupError` (exit 1) is an operation
that failed on the way — the database, ``pg_dump`` or the object store refused.
"""

from __future__ import annotations

from plait.errors import PlaitError


class BackupError(PlaitError):
    """A backup operation failed (exit 1)."""

    exit_code = 1


class BadBackup(BackupError):
    """The backup, its location or the request is not usable as given (exit 2)."""

    exit_code = 2
