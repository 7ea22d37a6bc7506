"""Sending one request to an LLM provider, with the retries a rate-limited API needs.

Inside one step attempt a request is retried on 408, 409, 429, 5xx, a timeout, a
dropped connection or a body that is not JSON (a proxy's error page): after the
``Retry-After`` the provider asked for (seconds, an HTTP date, or OpenAI's
``retry-after-ms``), else after a capped exponential backoff with jitter. At most
``max_retries`` times, and never past the step's deadline nor for longer than
:data:`MAX_INLINE_WAIT` at once: a longer pause is better spent on the engine's durable
timer than holding a worker, so the call gives up with ``LlmError(retryable=True,
retry_after=…)`` and the step's own retry policy (which honours ``retry_after``) takes
over. Any other 4xx is final and says what the provider said. The API key never
appears in a message.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from plait.actions.http import retry_after
from plait.ai.llm_wire import Request, error_message
from plait.errors import PlaitError
from plait.runtime.backoff import Backoff
from plait.security.masking import Masker

if TYPE_CHECKING:
    import httpx

    from plait.actions.base import ActionContext
    from plait.actions.llm import LlmConfig

#: the longest pause taken inside a call; a longer Retry-After goes to the engine
MAX_INLINE_WAIT = 30.0
#: backoff between retries without a Retry-After: 0.5 s, 1 s, 2 s … up to 8 s (jittered)
BACKOFF_BASE, BACKOFF_CAP = 0.5, 8.0
RETRY_STATUSES = frozenset({408, 409, 429})


class LlmError(PlaitError):
    """An LLM call failed. ``retryable`` says whether trying again may help,
    ``retry_after`` (seconds) how long the provider asked to wait, ``status`` the HTTP
    status when there was an answer."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


async def send(config: LlmConfig, request: Request, *, ctx: ActionContext | None = None) -> Any:
    """The parsed JSON answer to ``request`` (see the module docstring for retries)."""
    masker = Masker([config.api_key.get_secret_value()] if config.api_key else [])
    try:
        return await _send(config, request, ctx)
    except LlmError as exc:
        if not masker:
            raise
        raise LlmError(
            masker.mask(str(exc)),
            retryable=exc.retryable,
            retry_after=exc.retry_after,
            status=exc.status,
        ) from None


async def _send(config: LlmConfig, request: Request, ctx: ActionContext | None) -> Any:
    import httpx

    from plait.ops.tracing import http_transport

    backoff = Backoff(BACKOFF_BASE, BACKOFF_CAP)
    where = f"{request.method} {_shown(request.url)}"
    tries = config.max_retries + 1
    async with httpx.AsyncClient(verify=config.verify, transport=http_transport()) as client:
        for attempt in range(1, tries + 1):
            timeout = _timeout(config, ctx)
            if timeout <= 0:
                raise LlmError(f"{where}: the step's deadline has passed", retryable=True)
            error = await _once(client, request, where, timeout)
            if not isinstance(error, LlmError):
                return error
            if not error.retryable:
                raise error
            wait = error.retry_after if error.retry_after is not None else backoff.failed()
            if attempt == tries or wait > MAX_INLINE_WAIT or _past_deadline(ctx, wait):
                gave_up = f"{error} (gave up after {attempt} {_tries(attempt)})"
                raise LlmError(
                    gave_up, retryable=True, retry_after=error.retry_after, status=error.status
                )
            if ctx is not None:
                why = "as asked (Retry-After)" if error.retry_after is not None else "(backoff)"
                ctx.log(
                    "system", f"llm: {error}; retry {attempt} of {tries - 1} in {wait:.2g}s {why}"
                )
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _once(client: httpx.AsyncClient, request: Request, where: str, seconds: float) -> Any:
    """The parsed answer, or the LlmError that describes the failure (not raised)."""
    import httpx

    try:
        response = await client.request(
            request.method,
            request.url,
            headers=request.headers,
            json=request.body,
            timeout=seconds,
        )
    except httpx.TimeoutException:
        return LlmError(f"{where}: no answer within {seconds:g}s", retryable=True)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return LlmError(f"{where}: {reason}", retryable=True)
    text = response.text
    try:
        data: Any = json.loads(text) if text else None
    except ValueError:
        data = _NOT_JSON
    status = response.status_code
    if status < 400:
        if data is _NOT_JSON or data is None:
            start = " ".join(text.split())[:120]
            return LlmError(
                f"{where}: answered {status} with a body that is not JSON: {start!r}",
                retryable=True,
                status=status,
            )
        return data
    retryable = status in RETRY_STATUSES or status >= 500
    said = error_message(data if data is not _NOT_JSON else None, text)
    return LlmError(
        f"{where}: {status} {_status_text(status)}: {said}",
        retryable=retryable,
        retry_after=_retry_after(response) if retryable else None,
        status=status,
    )


_NOT_JSON = object()


def _retry_after(response: httpx.Response) -> float | None:
    millis = response.headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return retry_after(response.headers.get("retry-after"), time.time())


def _status_text(status: int) -> str:
    known = {
        400: "bad request",
        401: "the API key was refused",
        403: "forbidden",
        404: "not found (check base_url and model)",
        408: "request timeout",
        409: "conflict",
        413: "request too large",
        422: "unprocessable request",
        429: "rate limited",
    }
    return known.get(status, "server error" if status >= 500 else "error")


def _timeout(config: LlmConfig, ctx: ActionContext | None) -> float:
    if ctx is None or ctx.deadline is None:
        return config.timeout
    return min(config.timeout, ctx.deadline - time.time())


def _past_deadline(ctx: ActionContext | None, wait: float) -> bool:
    return ctx is not None and ctx.deadline is not None and time.time() + wait >= ctx.deadline


def _shown(url: str) -> str:
    """``url`` as errors show it: no query, no user or password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _tries(n: int) -> str:
    return "try" if n == 1 else "tries"
