"""``plait doctor``: check an installation and say what to fix.

Each check looks at one thing an operator would otherwise find out from a failed run:
the store answers and its schema is current, the key that seals secrets is there, is
private and opens what the store holds, an admin can log in, workers are alive and
nothing waits for them, schedules fire, the home's disk has room, the notification
channels parse. Each gives ``ok``, ``warn`` (works, but deserves a look) or ``fail``
(something is broken now) with the fix in one sentence.

The doctor only looks: it never creates the database, a key file or a directory, and
never migrates, so running it on a broken home changes nothing. It reads the store
directly (like ``plait users``), while servers and workers keep running on it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from plait import __version__
from plait.settings import Settings

if TYPE_CHECKING:
    from plait.store.sql import SqlStore

Status = Literal["ok", "warn", "fail"]
GIB = 1 << 30
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 1 << 10, "m": 10**6, "mb": 10**6,
          "mib": 1 << 20, "g": 10**9, "gb": 10**9, "gib": GIB, "t": 10**12, "tb": 10**12,
          "tib": 1 << 40}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one check."""

    check: str
    status: Status
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class Options:
    #: less free space than this in the home fails; less than 5 times this warns
    min_free_bytes: int = GIB
    #: a schedule whose next fire is older than this is not firing
    schedule_grace: float = 300.0
    #: a due step waiting longer than this with no live worker is stuck
    queue_grace: float = 60.0
    #: seconds to wait for a database server to answer
    connect_timeout: float = 5.0


@dataclass
class Context:
    """What the checks share: the settings and environment they judge, one clock
    reading, and the store once it is known to answer at the current schema."""

    settings: Settings
    environ: Mapping[str, str]
    now: float
    options: Options
    store: SqlStore | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def sqlite(self) -> bool:
        return self.settings.database_url.startswith("sqlite")


def parse_size(text: str) -> int:
    """``1GiB``, ``500MB``, ``2g`` or a number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match[2].lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 500MB, 1GiB or a number of bytes)")
    return int(float(match[1]) * _UNITS[unit])


def diagnose(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    now: float | None = None,
    options: Options | None = None,
) -> list[Finding]:
    """Every check, in the order an operator would fix them."""
    from plait.ops import doctor_keys

    ctx = Context(
        settings,
        os.environ if environ is None else environ,
        time.time() if now is None else now,
        options or Options(),
    )
    checks: list[tuple[str, Callable[[Context], Finding]]] = [
        ("home", _home),
        ("store", _store),
        ("migrations", _migrations),
        ("secret key", doctor_keys.secret_key),
        ("token key", doctor_keys.token_key),
        ("admin", _admin),
        ("workers", _workers),
        ("schedules", _schedules),
        ("disk", _disk),
        ("channels", _channels),
    ]
    try:
        for name, check in checks:
            ctx.findings.append(_guarded(name, check, ctx))
    finally:
        if ctx.store is not None:
            ctx.store.close()
    return ctx.findings


def _guarded(name: str, check: Callable[[Context], Finding], ctx: Context) -> Finding:
    """A check that breaks reports itself as failed instead of stopping the others."""
    try:
        return check(ctx)
    except Exception as exc:  # the report must come out whatever one check meets
        return Finding(
            name,
            "fail",
            f"the check itself failed: {type(exc).__name__}: {exc}",
            "run `plait --log-level debug doctor` and report it",
        )


def _not_checked(name: str) -> Finding:
    return Finding(name, "warn", "not checked: the store is not usable (see above)")


# -- home, store, migrations --------------------------------------------------------------
def _home(ctx: Context) -> Finding:
    home = ctx.settings.home
    if not home.exists():
        return Finding(
            "home",
            "warn" if not ctx.sqlite else "fail",
            f"{home} does not exist",
            "check PLAIT_HOME; the first `plait serve` or `plait run` creates it",
        )
    if not home.is_dir():
        return Finding("home", "fail", f"{home} is not a directory", "point PLAIT_HOME at one")
    if not os.access(home, os.W_OK | os.X_OK):
        return Finding(
            "home",
            "fail",
            f"{home} is not writable by this user",
            f"run plait as the owner of {home}, or fix its permissions",
        )
    if home.stat().st_mode & stat.S_IWOTH:
        return Finding("home", "warn", f"{home} is writable by every user", f"chmod o-w {home}")
    return Finding("home", "ok", f"{home}")


def _shown_url(url: str) -> str:
    from sqlalchemy import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by the store check
        return url


def _store(ctx: Context) -> Finding:
    from sqlalchemy import make_url

    url = ctx.settings.database_url
    try:
        parsed = make_url(url)
    except Exception as exc:
        return Finding(
            "store",
            "fail",
            f"PLAIT_DATABASE_URL is not a database URL: {exc}",
            "write it as postgresql+psycopg://USER@HOST/DB or sqlite:///PATH",
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database)).expanduser()
        if not path.exists():
            return Finding(
                "store",
                "fail",
                f"there is no database at {path}",
                "run `plait db upgrade` (or start `plait serve` once) to create it",
            )
    try:
        with _engine(ctx) as engine, engine.connect() as conn:
            version = ".".join(map(str, conn.dialect.server_version_info or ()))
    except Exception as exc:  # a missing driver, a refused login, a host that is down
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Finding(
            "store",
            "fail",
            f"{_shown_url(url)} does not answer: {reason}",
            "start the database, or fix PLAIT_DATABASE_URL",
        )
    backend = parsed.get_backend_name()
    product = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(backend, backend)
    return Finding("store", "ok", f"{product} {version} at {_shown_url(url)}")


@contextmanager
def _engine(ctx: Context) -> Iterator[Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    args: dict[str, Any] = {}
    if ctx.settings.database_url.startswith("postgresql"):
        args["connect_timeout"] = max(1, int(ctx.options.connect_timeout))
    engine = create_engine(ctx.settings.database_url, poolclass=NullPool, connect_args=args)
    try:
        yield engine
    finally:
        engine.dispose()


def _migrations(ctx: Context) -> Finding:
    from plait.store import migrate

    if ctx.findings[-1].status == "fail":
        return _not_checked("migrations")
    with _engine(ctx) as engine:
        revision = migrate.revision_of(engine)
    if revision == migrate.HEAD:
        ctx.store = migrate.open_store(ctx.settings.database_url, None, migrate=False)
        return Finding("migrations", "ok", f"the schema is current ({revision})")
    if revision is None:
        return Finding(
            "migrations", "fail", "the database has no Plait schema", "run `plait db upgrade`"
        )
    if revision.isdigit() and revision > migrate.HEAD:
        return Finding(
            "migrations",
            "fail",
            f"the schema is at {revision}, newer than this plait knows "
            f"({migrate.HEAD}, plait {__version__})",
            "upgrade plait here to the version the other processes run",
        )
    return Finding(
        "migrations",
        "fail",
        f"the schema is at {revision}, this plait needs {migrate.HEAD}",
        "stop the old processes, run `plait db upgrade`, then start the new version",
    )


# -- accounts, workers, schedules -----------------------------------------------------------
def _admin(ctx: Context) -> Finding:
    if ctx.store is None:
        return _not_checked("admin")
    from sqlalchemy import and_, select

    from plait.store.tables import role_bindings, users

    b, u = role_bindings.c, users.c
    query = (
        select(u.name)
        .join_from(users, role_bindings, and_(b.subject_kind == "user", b.subject_id == u.id))
        .where(b.role == "admin", b.namespace == "", u.disabled.is_(False))
        .order_by(u.name)
        .limit(5)
    )
    with ctx.store._hooks.read() as conn:
        names = list(conn.execute(query).scalars())
    if names:
        return Finding("admin", "ok", f"admin(s): {', '.join(names)}")
    if ctx.environ.get("PLAIT_ADMIN_USER") and ctx.environ.get("PLAIT_ADMIN_PASSWORD"):
        return Finding(
            "admin",
            "warn",
            "no admin yet: the API creates PLAIT_ADMIN_USER on its first start",
            "start `plait serve` or `plait api`",
        )
    return Finding(
        "admin",
        "fail",
        "no enabled admin: nobody can manage users or roles",
        "plait users create NAME --admin",
    )


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _due_steps(ctx: Context) -> tuple[int, float | None]:
    """Steps due to run now, and since when the oldest has waited."""
    from plait.store.server_workers import due_by_queue

    assert ctx.store is not None
    with ctx.store._hooks.read() as conn:
        rows = conn.execute(due_by_queue(ctx.now)).all()
    depth = sum(int(count) for _, count, _ in rows)
    oldest = min((since for _, _, since in rows if since is not None), default=None)
    return depth, oldest


def _workers(ctx: Context) -> Finding:
    if ctx.store is None:
        return _not_checked("workers")
    from plait.store.server_workers import WorkerStore

    records = WorkerStore(ctx.store).list_workers()
    live = [w for w in records if w.status(ctx.now) in ("running", "draining")]
    lost = [w for w in records if w.status(ctx.now) == "lost"]
    depth, oldest = _due_steps(ctx)
    waited = ctx.now - oldest if oldest is not None else 0.0
    start = "start `plait worker` (or `plait serve`) on this store"
    if not live and depth and waited > ctx.options.queue_grace:
        return Finding(
            "workers",
            "fail",
            f"no worker is alive and {depth} step(s) are due, the oldest for {_ago(waited)}",
            f"{start}; for a stopped `plait run`, `plait resume RUN_ID`",
        )
    if not live:
        if not records:
            return Finding(
                "workers",
                "ok",
                "no worker registered and nothing waits (`plait run` drives its own runs)",
            )
        heard = max(w.heartbeat_at for w in records)
        return Finding(
            "workers",
            "warn",
            f"no worker is alive (last heard {_ago(ctx.now - heard)}"
            " ago): runs started by the API or a schedule will wait",
            start,
        )
    shown = ", ".join(f"{w.id} ({w.running}/{w.concurrency})" for w in live[:5])
    if lost:
        gone = ", ".join(f"{w.id} (silent {_ago(ctx.now - w.heartbeat_at)})" for w in lost[:5])
        return Finding(
            "workers",
            "warn",
            f"{len(live)} alive: {shown}; lost: {gone}",
            "lost workers died without stopping: their steps are retried by "
            "the others; restart them or check their hosts",
        )
    other = sorted({w.version for w in live} - {__version__})
    if other:
        return Finding(
            "workers",
            "warn",
            f"{len(live)} alive: {shown}; some run plait {', '.join(other)}, this is {__version__}",
            "upgrade every process to one version",
        )
    backlog = f"; {depth} step(s) due, the oldest for {_ago(waited)}" if depth else ""
    return Finding("workers", "ok", f"{len(live)} alive: {shown}{backlog}")


def _when(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _schedules(ctx: Context) -> Finding:
    if ctx.store is None:
        return _not_checked("schedules")
    from sqlalchemy import select

    from plait.store.tables import schedules

    c = schedules.c
    query = select(c.workflow, c.cron, c.next_fire).where(c.next_fire.is_not(None))
    with ctx.store._hooks.read() as conn:
        rows = conn.execute(query.order_by(c.next_fire)).all()
    if not rows:
        return Finding("schedules", "ok", "no schedules")
    late = [r for r in rows if r.next_fire < ctx.now - ctx.options.schedule_grace]
    if late:
        shown = ", ".join(
            f"{r.workflow} ({r.cron}) due {_ago(ctx.now - r.next_fire)} ago" for r in late[:5]
        )
        return Finding(
            "schedules",
            "fail",
            f"{len(late)} of {len(rows)} schedule(s) did not fire: {shown}",
            "start `plait scheduler` (or `plait serve`); missed "
            "fires are then handled by each schedule's catch_up",
        )
    first = rows[0]
    return Finding(
        "schedules",
        "ok",
        f"{len(rows)} schedule(s); next: {first.workflow} at {_when(first.next_fire)}",
    )


# -- disk, channels -------------------------------------------------------------------------
def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _disk(ctx: Context) -> Finding:
    where = ctx.settings.home
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    share = usage.free / usage.total if usage.total else 1.0
    message = f"{_size(usage.free)} free of {_size(usage.total)} ({share:.0%}) at {where}"
    minimum = ctx.options.min_free_bytes
    if usage.free < minimum:
        return Finding(
            "disk",
            "fail",
            f"{message}, under {_size(minimum)}",
            "free space (old logs with `plait runs redact`, old backups with "
            "`plait backup prune`) or grow the volume",
        )
    if usage.free < 5 * minimum or share < 0.10:
        return Finding(
            "disk",
            "warn",
            f"{message}: running low",
            "plan more space before the store and work directories fill it",
        )
    return Finding("disk", "ok", message)


def _channels(ctx: Context) -> Finding:
    from plait.errors import PlaitError
    from plait.notify import load_channels

    try:
        found = load_channels(ctx.settings.home, ctx.environ)
    except (PlaitError, OSError) as exc:
        where = ctx.settings.home / "channels.yaml"
        return Finding(
            "channels",
            "fail",
            str(exc).splitlines()[0],
            f"fix {where} (or the PLAIT_CHANNEL_* variable it names)",
        )
    except Exception as exc:  # a YAML syntax error (yaml.YAMLError)
        where = ctx.settings.home / "channels.yaml"
        first = str(exc).strip().splitlines()[0]
        return Finding(
            "channels", "fail", f"{where} does not parse: {first}", f"fix the YAML of {where}"
        )
    if not found:
        return Finding("channels", "ok", "no notification channels configured")
    kinds = ", ".join(f"{name} ({channel.type})" for name, channel in sorted(found.items()))
    return Finding("channels", "ok", f"{len(found)} channel(s): {kinds}")


__all__ = ["Finding", "Options", "diagnose", "parse_size"]
