"""A real Plait server for the API tests: `serve()` (API, worker, scheduler) in a thread
on 127.0.0.1, on SQLite and on a fresh PostgreSQL database, driven over HTTP."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from plait.server.compose import build_services
from plait.server.main import Parts, serve
from plait.server.services import Services
from plait.settings import Settings

ADMIN_URL = os.environ.get(
    "PLAIT_TEST_POSTGRES_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ADMIN_USER, ADMIN_PASSWORD = "admin", "correct-horse-battery-staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    services: Services
    token: str

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def login(self, username: str, password: str) -> str:
        with self.anonymous() as c:
            r = c.post("/api/v1/auth/token", data={"username": username, "password": password})
            assert r.status_code == 200, r.text
            return str(r.json()["access_token"])


class _Thread:
    def __init__(self, services: Services, parts: Parts) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(services, parts), daemon=True)

    def _run(self, services: Services, parts: Parts) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop_event = asyncio.Event()
            await serve(services, parts, stop=self.stop_event, started=self.started)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by the fixture
            self.error = exc
            self.started.set()

    def start(self) -> None:
        self.thread.start()
        assert self.started.wait(30), "server did not start"
        if self.error:
            raise self.error

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


def _postgres_database() -> tuple[str, sa.Engine, str]:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    name = f"plait_srv_{secrets.token_hex(5)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        if os.environ.get("PLAIT_TEST_SKIP_POSTGRES") == "1":
            pytest.skip(f"PostgreSQL unreachable at {ADMIN_URL}")
        pytest.fail(f"PostgreSQL unreachable at {ADMIN_URL}: {exc.orig}", pytrace=False)
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    return url, admin, name


def _drop(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.dispose()


def start_server(home: Path, database_url: str) -> tuple[LiveServer, _Thread]:
    from plait.server.bootstrap import create_user

    settings = Settings(home=home, database_url=database_url)
    services = build_services(settings)
    create_user(services, ADMIN_USER, ADMIN_PASSWORD, admin=True)
    port = free_port()
    runner = _Thread(services, Parts(host="127.0.0.1", port=port, poll_interval=0.05))
    runner.start()
    live = LiveServer(f"http://127.0.0.1:{port}", services, "")
    live.token = live.login(ADMIN_USER, ADMIN_PASSWORD)
    return live, runner


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A running server with an admin (``server.token``), on each store."""
    admin = name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'home' / 'plait.db'}"
    else:
        url, admin, name = _postgres_database()
    live, runner = start_server(tmp_path / "home", url)
    try:
        yield live
    finally:
        runner.stop()
        live.services.store.close()
        if admin is not None and name is not None:
            _drop(admin, name)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The same on SQLite only, for tests that need not run twice."""
    live, runner = start_server(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'plait.db'}")
    try:
        yield live
    finally:
        runner.stop()
        live.services.store.close()
