"""``uses: http`` — make an HTTP request with httpx.

httpx is imported only when a request is made, so that importing this module (the
registry and the workflow validator read its input model) stays cheap. One
``httpx.AsyncClient`` per action instance keeps connections alive across steps; the
runtime closes it with :meth:`HttpAction.aclose`.

Credentials (``auth:`` or an ``http`` connection, see :mod:`plait.actions.http_auth`)
are masked in the run's logs, and never follow a redirect to another origin: httpx
drops ``Authorization`` there, and redirects are followed here so that an API key
header is dropped too. A refused request whose answer says when to come back
(``Retry-After``) tells the engine, so the next retry waits at least that long.
"""

from __future__ import annotations

import json as jsonlib
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.connections import ConnectionConfig, ConnectionType
from plait.actions.http_auth import (
    AUTH_KINDS,
    AuthInput,
    OAuth2Auth,
    TokenCache,
    auth_from_connection,
    static_headers,
)
from plait.actions.jsonpath import JsonPathError, compile_path
from plait.model.durations import parse_duration

if TYPE_CHECKING:
    import httpx

#: the most of a response body kept in the outputs; more is cut off (``body_truncated``)
MAX_BODY_BYTES = 1024 * 1024
MAX_REDIRECTS = 20
_SNIPPET_CHARS = 200
#: statuses where trying again later can help (the rest of 4xx cannot)
_RETRYABLE_4XX = {408, 409, 425, 429}
#: what every response gives; ``extract:`` names may not take these
BASE_OUTPUTS = frozenset({"status", "headers", "body", "body_truncated", "json"})
_EXTRACT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class HttpInput(ActionInput):
    url: str | None = Field(
        None,
        description="The URL (http or https), or with a connection a path under its base_url.",
    )
    method: str = Field("GET", description="The HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool | list[str | int | float | bool]] = Field(
        default_factory=dict, description="Query parameters, added to the URL."
    )
    json_body: Any = Field(None, alias="json", description="A body sent as JSON.")
    body: str | None = Field(None, description="A raw text body.")
    timeout: str | float = Field("30s", description="Time allowed for the request.")
    expect_status: int | list[int] | None = Field(
        None, description="The status (or statuses) that count as success; default any 2xx."
    )
    follow_redirects: bool = True
    auth: AuthInput | None = Field(
        None, description="One of bearer, basic, api_key or oauth2 (client credentials)."
    )
    connection: str | None = Field(
        None, description="An http connection: its base_url, headers and credentials."
    )
    extract: dict[str, str] = Field(
        default_factory=dict,
        description="Outputs picked from the JSON response: name -> JSONPath ($.data.id).",
    )
    extract_optional: bool = Field(
        False, description="A path that matches nothing gives null (or []) instead of failing."
    )

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("timeout")
    @classmethod
    def _valid_timeout(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value

    @field_validator("extract")
    @classmethod
    def _valid_paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not _EXTRACT_NAME.match(name):
                raise ValueError(f"extract: {name!r} is not a valid output name")
            if name in BASE_OUTPUTS:
                raise ValueError(f"extract: {name!r} is already an output of http")
            try:
                compile_path(path)
            except JsonPathError as exc:
                raise ValueError(f"extract.{name}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HttpInput:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give json or body, not both")
        if self.url is None and self.connection is None:
            raise ValueError("give a url (or a connection with a base_url)")
        return self

    def accepts(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 300
        if isinstance(self.expect_status, int):
            return status == self.expect_status
        return status in self.expect_status


class HttpConnectionConfig(ConnectionConfig):
    """An API's address, default headers and credentials. Give at most one kind of
    credential: ``bearer_token``; ``username`` and ``password``; ``api_key`` (with
    ``api_key_header``); or ``token_url``, ``client_id`` and ``client_secret`` (OAuth2)."""

    base_url: str = Field(description="Requests' url is resolved under this.")
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    api_key_header: str = "X-API-Key"
    api_key: SecretStr | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None
    audience: str | None = None
    client_auth: Literal["basic", "post"] = "basic"

    @model_validator(mode="after")
    def _one_auth(self) -> HttpConnectionConfig:
        kinds = [
            name
            for name, given in (
                ("bearer_token", self.bearer_token is not None),
                ("username/password", self.username is not None or self.password is not None),
                ("api_key", self.api_key is not None),
                ("token_url", self.token_url is not None),
            )
            if given
        ]
        if len(kinds) > 1:
            raise ValueError(f"give one kind of credential, not {' and '.join(kinds)}")
        if self.token_url is not None and not (self.client_id and self.client_secret):
            raise ValueError("token_url (OAuth2) needs client_id and client_secret")
        if _scheme(self.base_url) not in ("http", "https"):
            raise ValueError("base_url must be an http:// or https:// URL")
        return self


class HttpConnection(ConnectionType):
    name = "http"
    description = "An HTTP API: base URL, default headers and credentials."
    Config = HttpConnectionConfig

    async def test(self, config: HttpConnectionConfig) -> str:
        """A GET of base_url with the credentials (an OAuth2 token is fetched first):
        a refused token or a 401/403 fails; any other answer proves the API is there."""
        import httpx

        plain = config.model_dump()
        for field in ("bearer_token", "password", "api_key", "client_secret"):
            secret = getattr(config, field)
            plain[field] = secret.get_secret_value() if secret is not None else None
        auth = auth_from_connection(plain)
        async with httpx.AsyncClient(timeout=10.0) as client:
            headers = dict(config.headers)
            if auth is not None:
                headers |= await _auth_headers(client, TokenCache(), auth, 10.0)
            try:
                response = await client.get(config.base_url, headers=headers)
            except httpx.HTTPError as exc:
                raise ActionFailed(f"GET {config.base_url}: {_reason(exc)}") from exc
        if response.status_code in (401, 403):
            raise ActionFailed(
                f"GET {config.base_url}: the credentials were refused ({response.status_code})"
            )
        return f"GET {config.base_url} answered {response.status_code}"


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    headers: dict[str, str]
    auth: AuthInput | None


class HttpAction(Action):
    name = "http"
    version = "1"
    description = (
        "Make an HTTP request (with bearer, basic, API key or OAuth2 auth); outputs status, "
        "headers, body, parsed json and values extracted by JSONPath."
    )
    Input = HttpInput

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._tokens = TokenCache()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            from plait.ops.tracing import http_transport

            self._client = httpx.AsyncClient(transport=http_transport())  # spans when traced
        return self._client

    async def execute(self, ctx: ActionContext, input: HttpInput) -> ActionResult:
        target = _target(ctx, input)
        if target.auth is not None:
            for value in target.auth.secret_values():
                ctx.add_secret(value)
        response, body, truncated = await self._send(ctx, input, target)
        if truncated:
            ctx.log("system", f"http: response body cut at {MAX_BODY_BYTES} bytes")
        outputs = _outputs(response, body, truncated)
        where = f"{input.method} {target.url}"
        if not input.accepts(response.status_code):
            retryable = _retry(response.status_code)
            wait = retry_after(response.headers.get("retry-after"), time.time())
            message = _status_error(where, response, body)
            if retryable and wait is not None:
                ctx.log("system", f"http: the server asks to retry after {wait:g}s")
                message += f" (Retry-After: {wait:g}s)"
            raise ActionFailed(
                message,
                outputs,
                retryable=retryable,
                retry_after=wait if retryable else None,
            )
        if input.extract:
            outputs |= extract(input.extract, outputs, optional=input.extract_optional)
        return ActionResult(outputs=outputs)

    async def _send(
        self, ctx: ActionContext, input: HttpInput, target: _Target
    ) -> tuple[httpx.Response, bytes, bool]:
        """The request, with credentials; an OAuth2 token the API refuses (401) is
        dropped and a new one fetched, once."""
        timeout = parse_duration(input.timeout)
        client = self._get_client()
        oauth = target.auth.oauth2 if target.auth is not None else None
        token: str | None = None
        fresh = True
        headers = dict(target.headers)
        if oauth is not None:
            token, fresh = await self._tokens.token(client, oauth, timeout)
            ctx.add_secret(token)
            headers["Authorization"] = f"Bearer {token}"
        elif target.auth is not None:
            headers |= static_headers(target.auth)
        answer = await self._request(input, target.url, headers, timeout, _secret_headers(target))
        if answer[0].status_code == 401 and oauth is not None and token is not None and not fresh:
            ctx.log("system", "http: the API refused the cached OAuth2 token; fetching a new one")
            self._tokens.drop(oauth, token)
            token, _ = await self._tokens.token(client, oauth, timeout)
            ctx.add_secret(token)
            headers["Authorization"] = f"Bearer {token}"
            answer = await self._request(
                input, target.url, headers, timeout, _secret_headers(target)
            )
        return answer

    async def _request(
        self,
        input: HttpInput,
        url: str,
        headers: dict[str, str],
        seconds: float,
        secret_headers: set[str],
    ) -> tuple[httpx.Response, bytes, bool]:
        import httpx

        client = self._get_client()
        try:
            full = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ActionFailed(f"{input.method} {url}: {exc}", retryable=False) from None
        if input.params:  # added to a query string already in the URL, not replacing it
            full = full.copy_merge_params(input.params)
        request = client.build_request(
            input.method,
            full,
            headers=headers,
            json=input.json_body,
            content=input.body,
            timeout=seconds,
        )
        where = f"{input.method} {url}"
        origin = _origin(request.url)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
            hops = 0
            while input.follow_redirects and response.next_request is not None:
                hops += 1
                if hops > MAX_REDIRECTS:
                    await response.aclose()
                    raise ActionFailed(f"{where}: more than {MAX_REDIRECTS} redirects")
                following = response.next_request
                await response.aclose()
                if _origin(following.url) != origin:  # keep credentials at home
                    for name in secret_headers:
                        following.headers.pop(name, None)
                response = await client.send(following, stream=True, follow_redirects=False)
            try:
                body, truncated = await _read_capped(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            kind = type(exc).__name__  # ConnectTimeout, ReadTimeout, …
            raise ActionFailed(f"{where}: timed out after {seconds:g}s ({kind})") from exc
        except httpx.UnsupportedProtocol as exc:
            raise ActionFailed(f"{where}: {exc}", retryable=False) from exc
        except httpx.HTTPError as exc:
            raise ActionFailed(f"{where}: {_reason(exc)}") from exc
        return response, body, truncated


async def _auth_headers(
    client: httpx.AsyncClient, tokens: TokenCache, auth: AuthInput, seconds: float
) -> dict[str, str]:
    if auth.oauth2 is not None:
        token, _ = await tokens.token(client, auth.oauth2, seconds)
        return {"Authorization": f"Bearer {token}"}
    return static_headers(auth)


def _target(ctx: ActionContext, input: HttpInput) -> _Target:
    """The URL, headers and credentials of the request: the step's own, over those of
    its connection."""
    if input.connection is None:
        return _Target(str(input.url), dict(input.headers), input.auth)
    connection = ctx.connection(input.connection)
    if connection.type != "http":
        raise ActionFailed(
            f"connection {input.connection!r} is of type {connection.type}, not http",
            retryable=False,
        )
    config = connection.config
    base = str(config.get("base_url") or "")
    url = _under(base, input.url, input.connection)
    headers = {**dict(config.get("headers") or {}), **input.headers}
    auth = input.auth or auth_from_connection(config)
    return _Target(url, headers, auth)


def _under(base: str, url: str | None, name: str) -> str:
    """``url`` resolved under the connection's ``base``. An absolute URL elsewhere is
    refused: the connection's credentials are for its own API only."""
    if not url:
        return base
    if "://" not in url:
        return base.rstrip("/") + "/" + url.lstrip("/")
    if _origin(url) != _origin(base):
        raise ActionFailed(
            f"url {url} is not under the base_url of connection {name!r} ({base}); its "
            "credentials are sent only there",
            retryable=False,
        )
    return url


def _origin(url: object) -> tuple[str, str, int | None]:
    """Scheme, host and port: where credentials may go (httpx URLs and strings)."""
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is not a number: no origin is the same as it
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _secret_headers(target: _Target) -> set[str]:
    """Headers dropped on a redirect to another origin (httpx drops Authorization)."""
    if target.auth is not None and target.auth.api_key is not None:
        return {target.auth.api_key.header}
    return set()


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date,
    RFC 9110 §10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value[:9]))  # nine digits are already three decades
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def extract(paths: dict[str, str], outputs: dict[str, Any], *, optional: bool) -> dict[str, Any]:
    """``extract:``'s values from the JSON response. A definite path gives its value,
    a wildcard one (``*``, ``..``) the list of its matches. One that matches nothing
    fails the step, unless ``optional`` (then null, or ``[]``)."""
    document = outputs["json"]
    if document is None and not outputs["body_truncated"]:
        try:  # a JSON body sent as text/plain is still JSON
            document = jsonlib.loads(outputs["body"])
        except ValueError:
            document = None
    if document is None and not optional:
        raise ActionFailed(
            f"extract: the response body is not JSON (status {outputs['status']})",
            outputs,
            retryable=False,
        )
    found: dict[str, Any] = {}
    for name, text in paths.items():
        path = compile_path(text)
        matches = path.find(document) if document is not None else []
        if not matches and not optional:
            raise ActionFailed(
                f"extract.{name}: {path.text} matched nothing in the response "
                "(set extract_optional: true to get null instead)",
                outputs,
                retryable=False,
            )
        if path.definite:
            found[name] = matches[0] if matches else None
        else:
            found[name] = matches
    return found


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    """The body, but no more than MAX_BODY_BYTES of it (a huge download must not take
    the worker's memory); and whether it was cut."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"".join(chunks)[:MAX_BODY_BYTES], True
    return b"".join(chunks), False


def _outputs(response: httpx.Response, body: bytes, truncated: bool) -> dict[str, Any]:
    text = body.decode(response.encoding or "utf-8", errors="replace")
    parsed: Any = None
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not truncated and (content_type == "application/json" or content_type.endswith("+json")):
        try:
            parsed = jsonlib.loads(text)
        except ValueError:
            parsed = None  # a server that says JSON but sends something else
    return {
        "status": response.status_code,
        "headers": dict(response.headers.items()),
        "body": text,
        "body_truncated": truncated,
        "json": parsed,
    }


def _status_error(where: str, response: httpx.Response, body: bytes) -> str:
    snippet = body[: _SNIPPET_CHARS * 4].decode("utf-8", errors="replace")[:_SNIPPET_CHARS]
    snippet = " ".join(snippet.split())
    reason = f" {response.reason_phrase}" if response.reason_phrase else ""
    message = f"{where}: unexpected status {response.status_code}{reason}"
    return f"{message}: {snippet}" if snippet else message


def _retry(status: int) -> bool:
    return not (400 <= status < 500) or status in _RETRYABLE_4XX


def _reason(exc: Exception) -> str:
    """The innermost cause, which names what went wrong (``[Errno 111] Connection
    refused``) where httpx's own message is often empty."""
    cause: BaseException = exc
    for _ in range(10):  # bounded: a chain may loop
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    if isinstance(cause, OSError) and cause.errno:
        # asyncio says "Connect call failed (…)"; the errno's own text says why.
        text = f"[Errno {cause.errno}] {os.strerror(cause.errno)}"
    else:
        text = str(cause) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


__all__ = [
    "AUTH_KINDS",
    "MAX_BODY_BYTES",
    "AuthInput",
    "HttpAction",
    "HttpConnection",
    "HttpInput",
    "OAuth2Auth",
    "extract",
    "retry_after",
]
