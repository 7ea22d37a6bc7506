"""A small typed client for Plait's HTTP API (DESIGN §5), used by the command line.

The server is ``--server`` or ``PLAIT_SERVER`` (else the one ``plait login`` used
last); the token is ``PLAIT_TOKEN`` or the one ``plait login`` saved in
``$PLAIT_HOME/credentials.json`` (mode 0600, one entry per server). A saved session
whose access token expired is renewed once with its refresh token. Every error the
server answers becomes a :class:`ClientError` carrying its message and status; a
server that cannot be reached is a :class:`ClientError` with status 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from plait.errors import PlaitError
from plait.settings import Settings

SERVER_ENV, TOKEN_ENV = "PLAIT_SERVER", "PLAIT_TOKEN"
API = "/api/v1"


class ClientError(PlaitError):
    """The server refused a request (``status`` is its HTTP status, 0 when it could not
    be reached); ``details`` are the error's details, e.g. every invalid input."""

    def __init__(
        self, message: str, status: int = 0, code: str = "error", details: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details


# -- credentials ---------------------------------------------------------------------------
def credentials_path(settings: Settings | None = None) -> Path:
    return (settings or Settings.from_env()).home / "credentials.json"


def load_credentials(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"servers": {}}
    return (
        data
        if isinstance(data, dict) and isinstance(data.get("servers"), dict)
        else {"servers": {}}
    )


def save_session(path: Path, server: str, tokens: Mapping[str, Any]) -> None:
    """Remember ``tokens`` for ``server`` (and make it the default), readable only by
    the user: written to a 0600 file that replaces the old one atomically."""
    data = load_credentials(path)
    data["servers"][server] = {
        "access_token": tokens.get("access_token"),
        "refresh_token": tokens.get("refresh_token"),
    }
    data["default"] = server
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def resolve_server(given: str | None) -> str | None:
    """``--server``, else ``PLAIT_SERVER`` — the choice that makes a command remote."""
    server = given or os.environ.get(SERVER_ENV) or None
    return server.rstrip("/") if server else None


# -- the client ----------------------------------------------------------------------------
class Client:
    """Typed calls for the routes the command line uses; answers are the JSON bodies."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        refresh_token: str | None = None,
        credentials: Path | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.refresh_token = refresh_token
        self.credentials = credentials
        self.http = httpx.Client(base_url=self.server, timeout=timeout, transport=transport)

    @classmethod
    def from_env(cls, server: str | None = None) -> Client:
        """A client for ``server`` (or PLAIT_SERVER, or the last login's server)."""
        path = credentials_path()
        saved = load_credentials(path)
        url = resolve_server(server) or saved.get("default")
        if not url:
            raise ClientError(f"no server: pass --server URL or set {SERVER_ENV}")
        session = saved["servers"].get(url, {})
        token = os.environ.get(TOKEN_ENV) or session.get("access_token")
        refresh = None if os.environ.get(TOKEN_ENV) else session.get("refresh_token")
        return cls(url, token, refresh_token=refresh, credentials=path)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------
    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """Send; renew an expired saved session once; raise ClientError for any error."""
        response = self._send(method, path, headers, kw)
        if response.status_code == 401 and self.refresh_token and self._refresh():
            response = self._send(method, path, headers, kw)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _send(
        self, method: str, path: str, headers: Mapping[str, str] | None, kw: dict[str, Any]
    ) -> httpx.Response:
        try:
            return self.http.request(method, path, headers=self._headers(headers), **kw)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.server}: {exc}") from exc

    def _refresh(self) -> bool:
        try:
            r = self.http.post(f"{API}/auth/refresh", json={"refresh_token": self.refresh_token})
        except httpx.HTTPError:
            return False
        if r.status_code != 200:
            return False
        tokens = r.json()
        self.token, self.refresh_token = tokens.get("access_token"), tokens.get("refresh_token")
        if self.credentials is not None:
            save_session(self.credentials, self.server, tokens)
        return True

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # -- calls ---------------------------------------------------------------------------
    def login(self, username: str, password: str, otp: str | None = None) -> dict[str, Any]:
        form = {"username": username, "password": password}
        if otp:
            form["otp"] = otp
        tokens: dict[str, Any] = self.json("POST", f"{API}/auth/token", data=form)
        self.token, self.refresh_token = tokens.get("access_token"), tokens.get("refresh_token")
        return tokens

    def deploy(self, source: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/yaml"}
        result: dict[str, Any] = self.json(
            "POST", f"{API}/workflows", content=source.encode(), headers=headers
        )
        return result

    def start_run(
        self,
        workflow: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        coerce: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {"inputs": dict(inputs), "version": version, "coerce": coerce}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        run: dict[str, Any] = self.json(
            "POST", f"{API}/workflows/{workflow}/runs", json=body, headers=headers
        )
        return run

    def runs(
        self,
        *,
        workflow: str | None = None,
        status: Sequence[str] = (),
        namespace: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("status", s) for s in status]
        for name, value in (("workflow", workflow), ("namespace", namespace), ("cursor", cursor)):
            if value:
                params.append((name, value))
        page: dict[str, Any] = self.json("GET", f"{API}/runs", params=params)
        return page

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.json("GET", f"{API}/runs/{run_id}")
        return found

    def logs(
        self, run_id: str, *, after: int = 0, limit: int = 1000, step: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"after": after, "limit": limit}
        if step:
            params["step"] = step
        page: dict[str, Any] = self.json("GET", f"{API}/runs/{run_id}/logs", params=params)
        return page

    def follow_logs(
        self, run_id: str, *, after: int = 0, step: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event, data)`` pairs from the log stream until the server ends it."""
        params: dict[str, Any] = {"follow": "true", "after": after}
        if step:
            params["step"] = step
        path = f"{API}/runs/{run_id}/logs"
        try:
            with self.http.stream(
                "GET",
                path,
                params=params,
                headers=self._headers(),
                timeout=httpx.Timeout(30.0, read=None),
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _error(r)
                yield from parse_sse(r.iter_lines())
        except httpx.HTTPError as exc:
            raise ClientError(f"log stream from {self.server} broke: {exc}") from exc

    def cancel(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.json("POST", f"{API}/runs/{run_id}/cancel")
        return run

    def retry(self, run_id: str, version: str = "original") -> dict[str, Any]:
        run: dict[str, Any] = self.json(
            "POST", f"{API}/runs/{run_id}/retry", json={"version": version}
        )
        return run

    def decide(self, run_id: str, step: str, approve: bool, comment: str = "") -> dict[str, Any]:
        verb = "approve" if approve else "reject"
        run: dict[str, Any] = self.json(
            "POST", f"{API}/runs/{run_id}/steps/{step}/{verb}", json={"comment": comment}
        )
        return run


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-Sent Events as ``(event, JSON data)``; comments (keep-alives) skipped."""
    name = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def _error(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
        err = body.get("error", {}) if isinstance(body, dict) else {}
    except ValueError:
        err = {}
    message = err.get("message") or response.reason_phrase or "request failed"
    return ClientError(
        str(message), response.status_code, str(err.get("code", "error")), err.get("details")
    )
