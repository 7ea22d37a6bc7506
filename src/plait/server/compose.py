"""The composition root of the server processes: builds every part once and wires them.

``plait serve`` runs the API, a worker and the scheduler in one process on these
services; ``plait api``, ``plait worker`` and ``plait scheduler`` run one part each on
the same store.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from plait.actions.connections import (
    ChainedConnections,
    ConnectionSource,
    ConnectionTypes,
    EnvConnections,
    default_types,
)
from plait.actions.registry import ActionRegistry
from plait.runtime.service import RunService
from plait.security.tokens import TokenIssuer
from plait.server.services import Services
from plait.settings import Settings, env_secrets
from plait.store.accounts import AccountStore
from plait.store.migrate import open_store
from plait.store.rekey import ReloadingKeyring
from plait.store.server import ServerStore
from plait.store.server_connections import StoreConnections

JWT_ENV = "PLAIT_JWT_SECRET"


def jwt_secret(settings: Settings) -> bytes:
    """The key that signs access tokens: ``PLAIT_JWT_SECRET``, or a random key kept in
    ``$PLAIT_HOME/keys/jwt.key`` (0600) and shared by every process of one home."""
    given = os.environ.get(JWT_ENV)
    if given:
        return given.encode()
    path = settings.keys_dir / "jwt.key"
    if not path.exists():
        settings.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def build_services(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    wake: Callable[[], None] | None = None,
    max_body_bytes: int | None = None,
) -> Services:
    keyring = ReloadingKeyring.load_or_create(settings.home)
    store = open_store(settings.database_url, keyring)
    server_store = ServerStore(store)
    accounts = AccountStore(store)
    registry = ActionRegistry()
    fallback = env_secrets()

    def secret_source(namespace: str, names: Iterable[str]) -> dict[str, str]:
        wanted = list(names)
        found = {n: fallback[n] for n in wanted if n in fallback}
        found.update(server_store.secret_values(namespace, wanted))
        return found

    runs = RunService(
        store, registry, clock=clock, secrets=secret_source, wake=wake, slots=server_store
    )
    limit = max_body_bytes or int(os.environ.get("PLAIT_MAX_BODY_BYTES", 1_048_576))
    types = default_types()
    made = Services(
        settings=settings,
        store=store,
        server_store=server_store,
        accounts=accounts,
        registry=registry,
        runs=runs,
        tokens=TokenIssuer(jwt_secret(settings)),
        keyring=keyring,
        clock=clock,
        max_body_bytes=limit,
    )
    made.extras["connection_types"] = types
    made.extras["connections"] = connection_source(server_store, types)
    return made


def connection_source(store: ServerStore, types: ConnectionTypes) -> ConnectionSource:
    """Where steps' connections come from: the store (the run's namespace, then ``*``),
    then ``PLAIT_CONNECTION_<NAME>`` variables of the worker's environment."""
    return ChainedConnections(StoreConnections(store, types), EnvConnections(types=types))


def work_root(settings: Settings) -> Path:
    """Where server-run steps get their per-run working directories."""
    return Path(os.environ.get("PLAIT_WORK_DIR") or settings.home / "work")
