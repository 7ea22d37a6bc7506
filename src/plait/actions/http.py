"""``uses: http`` — make an HTTP request with httpx.

httpx is imported only when a request is made, so that importing this module (the
registry and the workflow validator read its input model) stays cheap. One
``httpx.AsyncClient`` per action instance keeps connections alive across steps; the
runtime closes it with :meth:`HttpAction.aclose`.
"""

from __future__ import annotations

import json as jsonlib
import os
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.model.durations import parse_duration

if TYPE_CHECKING:
    import httpx

#: the most of a response body kept in the outputs; more is cut off (``body_truncated``)
MAX_BODY_BYTES = 1024 * 1024
_SNIPPET_CHARS = 200
#: statuses where trying again later can help (the rest of 4xx cannot)
_RETRYABLE_4XX = {408, 409, 425, 429}


class HttpInput(ActionInput):
    url: str = Field(description="The URL (http or https).")
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

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("timeout")
    @classmethod
    def _valid_timeout(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpInput:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give json or body, not both")
        return self

    def accepts(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 300
        if isinstance(self.expect_status, int):
            return status == self.expect_status
        return status in self.expect_status


class HttpAction(Action):
    name = "http"
    version = "1"
    description = "Make an HTTP request; outputs status, headers, body and parsed json."
    Input = HttpInput

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient()
        return self._client

    async def execute(self, ctx: ActionContext, input: HttpInput) -> ActionResult:
        import httpx

        timeout = parse_duration(input.timeout)
        request = self._get_client().build_request(
            input.method,
            input.url,
            headers=input.headers,
            params=input.params,
            json=input.json_body,
            content=input.body,
            timeout=timeout,
        )
        where = f"{input.method} {input.url}"
        try:
            response = await self._get_client().send(
                request, stream=True, follow_redirects=input.follow_redirects
            )
            try:
                body, truncated = await _read_capped(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            kind = type(exc).__name__  # ConnectTimeout, ReadTimeout, …
            raise ActionFailed(f"{where}: timed out after {timeout:g}s ({kind})") from exc
        except httpx.UnsupportedProtocol as exc:
            raise ActionFailed(f"{where}: {exc}", retryable=False) from exc
        except httpx.HTTPError as exc:
            raise ActionFailed(f"{where}: {_reason(exc)}") from exc
        if truncated:
            ctx.log("system", f"http: response body cut at {MAX_BODY_BYTES} bytes")
        outputs = _outputs(response, body, truncated)
        if not input.accepts(response.status_code):
            raise ActionFailed(
                _status_error(where, response, body),
                outputs,
                retryable=_retry(response.status_code),
            )
        return ActionResult(outputs=outputs)


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
