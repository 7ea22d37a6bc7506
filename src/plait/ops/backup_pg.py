"""PostgreSQL's own tools for full backups: ``pg_dump`` in, ``pg_restore`` out.

A full backup of a PostgreSQL store uses ``pg_dump`` (custom format, compressed) when
the client is installed and at least as new as the server — ``pg_dump`` refuses older
clients' dumps of newer servers anyway. It dumps the snapshot that the backup's own
transaction exported (``pg_dump --snapshot``), so the row counts and indexes recorded
beside it describe exactly the rows in the dump. Without a usable ``pg_dump`` the
backup falls back to the logical row export, which needs nothing but the driver.

The password never appears on a command line (visible to ``ps``): it goes to the child
in ``PGPASSWORD``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from plait.ops.backup_errors import BackupError, BadBackup


class ScratchUnavailable(BackupError):
    """No temporary database could be made for a test restore."""


#: how long pg_dump and pg_restore may take (large stores: hours)
TIMEOUT = 6 * 3600.0


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """The libpq connection URI of a SQLAlchemy URL, and the environment carrying its
    password."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None)
    return uri.render_as_string(hide_password=False), env


def tool_major(tool: str) -> int | None:
    """The major version of ``pg_dump`` or ``pg_restore`` on PATH (None: not there)."""
    path = shutil.which(tool)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(found.group(1)) if found else None


def server_major(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000


def dump_unusable(conn: Connection) -> str | None:
    """Why ``pg_dump`` cannot dump this server (None: it can)."""
    client = tool_major("pg_dump")
    if client is None:
        return "pg_dump is not on PATH"
    server = server_major(conn)
    if client < server:
        return f"pg_dump {client} is older than the server ({server})"
    return None


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    try:
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} took longer than {TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise BackupError(f"{what}: cannot start {args[0]}: {exc.strerror}") from None
    if out.returncode != 0:
        detail = " ".join((out.stderr or out.stdout).split())[:2000]
        raise BackupError(f"{what} failed (exit {out.returncode}): {detail}")


def dump(url: str, snapshot: str, out: Path) -> None:
    """``pg_dump`` of the exported ``snapshot`` into ``out`` (custom format)."""
    uri, env = libpq(url)
    tool = shutil.which("pg_dump") or "pg_dump"
    args = [tool, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}"]
    _run([*args, f"--file={out}", f"--dbname={uri}"], env, "pg_dump")


def restore(archive: Path, url: str) -> None:
    """``pg_restore`` of a custom-format archive into the database at ``url``, in one
    transaction (a failure leaves the database as it was)."""
    if shutil.which("pg_restore") is None:
        raise BadBackup(
            "this backup was made with pg_dump: restoring it needs pg_restore (the "
            "PostgreSQL client tools) on PATH"
        )
    uri, env = libpq(url)
    args = ["pg_restore", "--no-owner", "--no-privileges", "--clean", "--if-exists"]
    args += ["--single-transaction", "--exit-on-error", f"--dbname={uri}", str(archive)]
    _run(args, env, "pg_restore")


def list_archive(archive: Path) -> int:
    """How many entries the archive's table of contents has (reads it all: a truncated
    or damaged archive fails here)."""
    if shutil.which("pg_restore") is None:
        raise BadBackup("checking a pg_dump archive needs pg_restore on PATH")
    try:
        out = subprocess.run(
            ["pg_restore", "--list", str(archive)], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"pg_restore --list: {exc}") from None
    if out.returncode != 0:
        raise BadBackup(f"{archive.name}: not a readable pg_dump archive: {out.stderr.strip()}")
    return sum(1 for ln in out.stdout.splitlines() if ln and not ln.startswith(";"))


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards."""
    parsed = make_url(server_url)
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"plait_verify_{secrets.token_hex(5)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except SQLAlchemyError as exc:
        admin.dispose()
        raise BackupError(
            f"cannot create a scratch database on {_safe(server_url)}: {exc}"
        ) from None
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
