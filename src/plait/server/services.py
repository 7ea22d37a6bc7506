"""What the API routes may use: built once by the composition root, passed down.

There are no global singletons: a route gets these from ``request.app.state.services``
through :func:`get_services` (or :func:`services_of` outside dependencies).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request

if TYPE_CHECKING:
    from plait.actions.registry import ActionRegistry
    from plait.runtime.service import RunService
    from plait.security.crypto import Keyring
    from plait.security.tokens import TokenIssuer
    from plait.settings import Settings
    from plait.store.accounts import AccountStore
    from plait.store.server import ServerStore
    from plait.store.sql import SqlStore


_T = TypeVar("_T")


@dataclass
class Services:
    settings: Settings
    store: SqlStore
    server_store: ServerStore
    accounts: AccountStore
    registry: ActionRegistry
    runs: RunService
    tokens: TokenIssuer
    keyring: Keyring
    clock: Callable[[], float] = time.time
    #: request bodies above this are refused with 413
    max_body_bytes: int = 1_048_576
    #: process-wide metrics (prometheus_client registry), set by the composition root
    metrics: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def inline_reads(self) -> bool:
        """Whether a short indexed read may run on the event loop itself. On SQLite it
        takes tens of microseconds, less than the hop to the thread pool and back (and
        than the GIL hand-over that hop waits for under load); over a network to
        PostgreSQL it goes to the thread pool, so a slow database never stalls the
        loop."""
        return self.store.dialect == "sqlite"

    async def read(self, func: Callable[..., _T], *args: Any) -> _T:
        """``func(*args)`` for a short store read: inline or in the thread pool (see
        :attr:`inline_reads`)."""
        if self.inline_reads:
            return func(*args)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(func, *args)


async def get_services(request: Request) -> Services:
    """The route dependency. ``async`` so FastAPI calls it on the event loop: a plain
    ``def`` dependency costs every request a hop to the thread pool and back."""
    return services_of(request)


def services_of(request: Request) -> Services:
    """The same, for code that is not a dependency."""
    services: Services = request.app.state.services
    return services
