"""Managing connections: describing types, validating a write, testing a connection.

Shared by the API (:mod:`plait.server.routes.connections`) and the command line
(:mod:`plait.cli_connections`), so both validate, keep credentials and mask a test's
answer the same way. Storage is :mod:`plait.store.server_connections`.

Writing keeps credentials the caller leaves out: a form that edits a host must not
make the user type the password again, and a password is never sent back to fill it
in. A credential given as ``null`` is cleared. Credentials are kept only when the type
stays the same (a ``postgres`` password means nothing to an ``smtp`` server).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from plait.actions.connections import ConnectionType, ConnectionTypes
from plait.errors import PlaitError
from plait.security.masking import Masker

#: What steps write after ``connection:``; also the end of ``PLAIT_CONNECTION_<NAME>``.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
#: Seconds a connection test may take before it is reported as failed.
TEST_TIMEOUT = 10.0
#: The longest test message passed on (a driver may answer with pages of text).
MAX_MESSAGE = 1000


class ConnectionConfigError(PlaitError):
    """A config that its type's ``Config`` model refuses; ``problems`` name each field
    (``{"loc": ["port"], "message": "..."}``)."""

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    message: str


def load_type(types: ConnectionTypes, name: str) -> type[ConnectionType]:
    """The type class ``name``; PlaitError (never ImportError) if unknown or broken."""
    try:
        return types.get(name)
    except PlaitError:
        raise
    except Exception as exc:  # a built-in or plugin module that fails to import
        raise PlaitError(
            f"connection type {name!r} is not available: {type(exc).__name__}: {exc}"
        ) from exc


def describe_type(cls: type[ConnectionType], name: str | None = None) -> dict[str, Any]:
    """What the API and ``plait connections types`` show for one type."""
    return {
        "name": name or cls.name,
        "description": cls.description or (cls.__doc__ or "").strip(),
        "schema": cls.schema(),
        "secret_fields": cls.secret_fields(),
    }


def describe_types(types: ConnectionTypes) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every loadable type, and why each other one could not be loaded (a built-in
    whose client library is missing must not hide the rest)."""
    found: list[dict[str, Any]] = []
    broken: dict[str, str] = {}
    for name in types.names():
        try:
            found.append(describe_type(load_type(types, name), name))
        except PlaitError as exc:
            broken[name] = str(exc)
    return found, broken


def secret_status(
    types: ConnectionTypes, type_name: str, stored: Collection[str]
) -> dict[str, bool]:
    """Each credential field of the type and whether ``stored`` (the names of the
    stored credentials) sets it — what is shown instead of the values. A type that no
    longer loads (its plugin was removed) shows what is stored."""
    try:
        fields = load_type(types, type_name).secret_fields()
    except PlaitError:
        fields = []
    status = {f: f in stored for f in fields}
    status.update(dict.fromkeys(stored, True))
    return status


def prepare(
    types: ConnectionTypes,
    type_name: str,
    config: Mapping[str, Any],
    stored_type: str | None = None,
    stored_secrets: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``config`` validated by the type's ``Config`` and split into public fields and
    credentials, keeping each stored credential that ``config`` leaves out (when the
    type is unchanged). :class:`ConnectionConfigError` names every bad field."""
    cls = load_type(types, type_name)
    merged = dict(config)
    if stored_type == type_name:
        for field in cls.secret_fields():
            if field not in merged and field in (stored_secrets or {}):
                merged[field] = (stored_secrets or {})[field]
    try:
        cls.Config.model_validate(merged)
    except ValidationError as exc:
        problems, text = _problems(exc)
        raise ConnectionConfigError(f"invalid {type_name} connection: {text}", problems) from None
    return types.split(type_name, merged)


def _problems(exc: ValidationError) -> tuple[list[dict[str, Any]], str]:
    """Each bad field and why, without the values given (one may be a credential)."""
    problems = [{"loc": [str(p) for p in e["loc"]], "message": e["msg"]} for e in exc.errors()]
    text = "; ".join(f"{'.'.join(p['loc']) or 'config'}: {p['message']}" for p in problems)
    return problems, text


async def check_connection(
    types: ConnectionTypes,
    type_name: str,
    public: Mapping[str, Any],
    secrets: Mapping[str, str],
    *,
    within: float = TEST_TIMEOUT,
) -> CheckResult:
    """Run the type's ``test``; never raises. The message is masked (a driver's error
    may quote the password it was given) and the whole test bounded by ``within`` seconds.

    The test runs on its own event loop in a thread: a type whose client blocks (a
    synchronous driver) must not stall the API's event loop. One still running at the
    timeout is cancelled if it awaits, or left to finish on its own if it blocks; the
    caller has its answer either way.
    """
    masker = Masker(v for v in secrets.values() if v)
    try:
        cls = load_type(types, type_name)
        model = cls.Config.model_validate({**public, **secrets})
        probe = _Probe(cls, model)
        try:
            message = await asyncio.wait_for(probe.start(), within)
        except TimeoutError:
            probe.cancel()
            return CheckResult(False, f"no answer within {within:g}s")
        return CheckResult(True, _clip(masker.mask(str(message or "ok"))))
    except ValidationError as exc:  # stored under an older version of the type
        text = f"invalid {type_name} connection: {_problems(exc)[1]}"
        return CheckResult(False, _clip(masker.mask(text)))
    except Exception as exc:
        text = str(exc) or type(exc).__name__
        return CheckResult(False, _clip(masker.mask(text)))


class _Probe:
    """One type's ``test`` on its own event loop in a daemon thread."""

    def __init__(self, cls: type[ConnectionType], model: Any) -> None:
        self.done: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._cls, self._model = cls, model
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[str] | None = None

    def start(self) -> asyncio.Future[str]:
        name = f"connection-test-{self._cls.name}"
        threading.Thread(target=self._work, name=name, daemon=True).start()
        return asyncio.wrap_future(self.done)

    def cancel(self) -> None:
        """Stop a test that awaits (one that blocks its thread finishes on its own)."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the test has ended
                loop.call_soon_threadsafe(task.cancel)

    def _work(self) -> None:
        if not self.done.set_running_or_notify_cancel():
            return
        loop = asyncio.new_event_loop()
        try:
            self._task = loop.create_task(self._cls().test(self._model))
            self._loop = loop
            self.done.set_result(loop.run_until_complete(self._task))
        except BaseException as exc:  # handed to the waiting caller
            self.done.set_exception(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


__all__ = [
    "NAME",
    "TEST_TIMEOUT",
    "CheckResult",
    "ConnectionConfigError",
    "check_connection",
    "describe_type",
    "describe_types",
    "load_type",
    "prepare",
    "secret_status",
]
