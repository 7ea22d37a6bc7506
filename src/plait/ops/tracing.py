"""OpenTelemetry traces: one trace per run, a span per step attempt, and the HTTP
requests made inside an attempt (the ``http`` action's) or served by the API.

Off unless an OTLP endpoint is configured (``PLAIT_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``; spans go
over OTLP/HTTP). Off costs nothing: no ``opentelemetry`` module is imported, and the
runtime's hook is an ``if`` on None. ``OTEL_SDK_DISABLED=true`` turns it off too.

**A run's trace outlives its processes.** A run can be driven by several processes
(``plait resume`` after a crash, any worker of a cluster), so no process can hold its
root span open. Instead the ids are derived from the run id: the trace id *is* the
run's UUID (run ids are UUIDv7, whose low bits are random, as W3C trace ids want), and
the run span's id is a hash of it. Every attempt span, in whatever process, names that
run span as its parent; the run span itself is exported by the process that records
the run's end, with the run's start and end times. So a resumed run continues the
same trace, and ratio sampling (``OTEL_TRACES_SAMPLER=traceidratio``) decides the same
way for a run everywhere.

The trace id is also what logs carry (``trace_id``, see :mod:`plait.ops.logging`),
computed from the run id even when tracing is off, so a log line leads to the trace.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from plait.ops import logging as logctx

if TYPE_CHECKING:
    import httpx
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from plait.actions.base import ActionContext
    from plait.engine.api import Outcome
    from plait.engine.state import Event, RunState

ENDPOINT_VARS = (
    "PLAIT_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
log = logging.getLogger(__name__)

RUN_ENDED = frozenset({"run.succeeded", "run.failed", "run.cancelled", "run.timed_out"})
_FAILED = frozenset({"failed", "timed_out"})

#: the tracing of the attempt running in this task (for its HTTP requests' spans)
_active: ContextVar[Tracing | None] = ContextVar("plait_tracing", default=None)
#: ids the next span must take (the run span's derived ones); see :class:`_DerivedIds`
_forced: ContextVar[tuple[int, int] | None] = ContextVar("plait_span_ids", default=None)


# -- ids ---------------------------------------------------------------------------------
def trace_id_of(run_id: str) -> int:
    """The run's trace id: its UUID as a 128-bit number (a hash for other ids)."""
    try:
        value = uuid.UUID(run_id).int
    except ValueError:
        value = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big")
    return value or 1


def run_span_id(run_id: str) -> int:
    """The id of the run's own span, the parent of its attempt spans."""
    digest = hashlib.sha256(b"plait-run-span:" + run_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@functools.lru_cache(maxsize=4096)
def trace_hex(run_id: str) -> str:
    """The trace id as logs and tracing backends show it (32 hex digits); cached, as
    every attempt of a run binds it to its log context."""
    return f"{trace_id_of(run_id):032x}"


# -- configuration -------------------------------------------------------------------------
def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, the SDK not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARS)


_UNSET: Any = object()
_current: Tracing | None = _UNSET


def current() -> Tracing | None:
    """This process's tracing: made from the environment on first use (None when off),
    or what :func:`set_current` installed. Like logging handlers, an exporter is a
    resource of the process, shared by every runner and app in it."""
    global _current
    if _current is _UNSET:
        _current = None
        if configured():
            try:
                _current = Tracing.from_env()
            except ImportError as exc:  # asked for, but not installed: say so, run on
                log.warning(
                    "tracing is configured but OpenTelemetry is missing (%s): "
                    "pip install 'plait[otel]'",
                    exc,
                )
    return _current


def set_current(tracing: Tracing | None) -> None:
    """Install ``tracing`` as this process's (tests; None turns tracing off)."""
    global _current
    _current = tracing


def otlp_exporter(environ: Mapping[str, str] | None = None) -> SpanExporter:
    """The OTLP/HTTP exporter for the configured endpoint. ``PLAIT_OTLP_ENDPOINT`` is a
    base URL like ``OTEL_EXPORTER_OTLP_ENDPOINT`` (``/v1/traces`` is appended); the
    ``OTEL_EXPORTER_OTLP_*`` variables (headers, timeout, certificates) apply as usual."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    env = os.environ if environ is None else environ
    base = env.get("PLAIT_OTLP_ENDPOINT", "").strip()
    if base:
        return OTLPSpanExporter(endpoint=base.rstrip("/") + "/v1/traces")
    return OTLPSpanExporter()


# -- the runtime's hooks -------------------------------------------------------------------
async def traced(
    tracing: Tracing | None, ctx: ActionContext, uses: str, work: Awaitable[Outcome]
) -> Outcome:
    """Run one attempt (``work``) with its log context and, when tracing is on, inside
    its span. The one call site in the runner; costs a hash when tracing is off."""
    token = logctx.bind(
        run_id=ctx.run_id,
        workflow=ctx.workflow,
        step=ctx.step,
        attempt=ctx.attempt,
        trace_id=trace_hex(ctx.run_id),
    )
    try:
        if tracing is None:
            return await work
        return await tracing.attempt(ctx, uses, work)
    finally:
        logctx.reset(token)


def http_transport() -> httpx.AsyncBaseTransport | None:
    """A transport for the ``http`` action's client that makes a client span of each
    request sent inside a traced attempt, or None (httpx's default) when no tracing
    exists in this process."""
    if not Tracing.made and current() is None:
        return None
    import httpx

    made: httpx.AsyncBaseTransport = _transport_class()(httpx.AsyncHTTPTransport())
    return made


class Tracing:
    """Spans for runs, attempts and HTTP requests on one ``TracerProvider``.

    ``exporter`` defaults to OTLP/HTTP from the environment; tests give the SDK's
    ``InMemorySpanExporter`` with ``batch=False`` so spans are there at once.
    """

    #: whether any instance was made in this process (see :func:`http_transport`)
    made = False

    def __init__(
        self,
        exporter: SpanExporter | None = None,
        *,
        batch: bool = True,
        service_name: str | None = None,
    ) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        attributes: dict[str, Any] = {}
        if service_name or not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = service_name or "plait"
        self.provider = TracerProvider(
            resource=Resource.create(attributes), id_generator=_derived_ids()
        )
        exporter = exporter if exporter is not None else otlp_exporter()
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        from plait import __version__

        self.tracer: Tracer = self.provider.get_tracer("plait", __version__)
        Tracing.made = True

    @classmethod
    def from_env(cls) -> Tracing:
        return cls()

    def shutdown(self) -> None:
        """Export what is buffered and stop (also done at process exit)."""
        self.provider.shutdown()

    # -- runs and attempts -----------------------------------------------------------------
    def _run_parent(self, run_id: str) -> Context:
        """A context whose span is the run's (remote: another process exports it)."""
        from opentelemetry import trace
        from opentelemetry.sdk.trace.sampling import Decision
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        trace_id = trace_id_of(run_id)
        decision = self.provider.sampler.should_sample(None, trace_id, "run").decision
        sampled = decision in (Decision.RECORD_AND_SAMPLE,)
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        parent = SpanContext(trace_id, run_span_id(run_id), is_remote=True, trace_flags=flags)
        return trace.set_span_in_context(NonRecordingSpan(parent))

    async def attempt(self, ctx: ActionContext, uses: str, work: Awaitable[Outcome]) -> Outcome:
        """``work`` inside a span ``step <id>`` that ends with the attempt's outcome."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind

        attributes: dict[str, str | int] = {
            "plait.run_id": ctx.run_id,
            "plait.workflow": ctx.workflow,
            "plait.namespace": ctx.namespace,
            "plait.step": ctx.step,
            "plait.attempt": ctx.attempt,
            "plait.action": uses,
        }
        span = self.tracer.start_span(
            f"step {_node_of(ctx.step)}",
            context=self._run_parent(ctx.run_id),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        logged = logctx.bind(span_id=f"{span.get_span_context().span_id:016x}")
        active = _active.set(self)
        status = "failed"
        try:
            with trace.use_span(span, end_on_exit=False):
                outcome = await work
            status = outcome.kind
            _set_status(span, status, outcome.error)
            return outcome
        except asyncio.CancelledError:  # a cancel, a run timeout, or a runner stopping
            status = "cancelled"
            raise
        finally:
            span.set_attribute("plait.status", status)
            span.end()
            _active.reset(active)
            logctx.reset(logged)

    def transition(self, run: RunState, events: Sequence[Event]) -> None:
        """Export the run span when ``events`` (one committed transition) end the run."""
        if any(e.type in RUN_ENDED for e in events):
            self.run_ended(run)

    def run_ended(self, run: RunState) -> None:
        """The run span, with the derived ids, from the run's start to its end."""
        from opentelemetry.context import Context
        from opentelemetry.trace import Link, SpanContext, TraceFlags

        links = []
        if run.parent_run_id:  # a sub-workflow: link to the run that started it
            parent = SpanContext(
                trace_id_of(run.parent_run_id),
                run_span_id(run.parent_run_id),
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            links.append(Link(parent, {"plait.relation": "parent_run"}))
        status = str(run.status)
        attributes: dict[str, str | int] = {
            "plait.run_id": run.id,
            "plait.workflow": run.workflow,
            "plait.namespace": run.namespace,
            "plait.status": status,
            "plait.run_attempt": run.attempt,
            "plait.trigger": str((run.trigger or {}).get("type", "manual")),
        }
        start = run.started_at or run.created_at
        end = run.finished_at or time.time()
        forced = _forced.set((trace_id_of(run.id), run_span_id(run.id)))
        try:
            span = self.tracer.start_span(
                f"run {run.workflow}",
                context=Context(),  # a root: never a child of whatever is current
                attributes=attributes,
                links=links,
                start_time=_ns(start),
            )
        finally:
            _forced.reset(forced)
        _set_status(span, status, run.error)
        span.end(end_time=_ns(max(end, start)))

    # -- HTTP --------------------------------------------------------------------------------
    @contextmanager
    def server_span(
        self, scope: Mapping[str, Any], name: Callable[[], str]
    ) -> Iterator[Callable[[int], None]]:
        """A server span for one request (parent: a ``traceparent`` header, if sent);
        yields the function that records the response status. ``name`` is called at the
        end, when the route (and so its template) is known."""
        from opentelemetry import trace
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        method = str(scope.get("method", "GET"))
        span = self.tracer.start_span(
            f"{method} request",
            context=extract(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": str(scope.get("path", ""))},
        )
        code = [0]
        logged = logctx.bind(trace_id=f"{span.get_span_context().trace_id:032x}")

        def status(value: int) -> None:
            code[0] = value

        try:
            with trace.use_span(span, end_on_exit=False, record_exception=True):
                yield status
        finally:
            logctx.reset(logged)
            route = name()
            span.update_name(route)
            span.set_attribute("http.route", route.partition(" ")[2])
            if code[0]:
                span.set_attribute("http.response.status_code", code[0])
                if code[0] >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR))
            span.end()


def _set_status(span: Span, status: str, error: str | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    if status in _FAILED:
        span.set_status(Status(StatusCode.ERROR, error or status))
    elif status == "succeeded":
        span.set_status(Status(StatusCode.OK))


def _node_of(step: str) -> str:
    """``smoke`` for the item ``smoke[3]``: span names stay few (the key is an
    attribute)."""
    return step.split("[", 1)[0]


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _derived_ids() -> Any:
    """The SDK's random ids, except for a span started while :data:`_forced` is set
    (the run span, whose ids every process derives from the run id)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _DerivedIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            forced = _forced.get()
            return forced[0] if forced else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _forced.get()
            return forced[1] if forced else super().generate_span_id()

    return _DerivedIds()


_TRANSPORT: type[Any] | None = None


def _transport_class() -> type[Any]:
    """:class:`httpx.AsyncBaseTransport` that wraps another and traces each request
    (made on first use: httpx is imported only by processes that make requests)."""
    global _TRANSPORT
    if _TRANSPORT is not None:
        return _TRANSPORT
    import httpx

    class TracingTransport(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            tracing = _active.get()
            if tracing is None:
                return await self.inner.handle_async_request(request)
            return await _client_span(tracing, self.inner, request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    _TRANSPORT = TracingTransport
    return TracingTransport


async def _client_span(
    tracing: Tracing, inner: httpx.AsyncBaseTransport, request: httpx.Request
) -> httpx.Response:
    """One client span around sending ``request`` (to its response headers), with the
    W3C ``traceparent`` header added so the server's spans join the run's trace."""
    from opentelemetry import trace
    from opentelemetry.propagate import inject
    from opentelemetry.trace import SpanKind, Status, StatusCode

    url = request.url
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.full": str(url.copy_with(query=None, fragment=None, username=None, password=None)),
        "server.address": url.host,
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    span = tracing.tracer.start_span(request.method, kind=SpanKind.CLIENT, attributes=attributes)
    try:
        with trace.use_span(span, end_on_exit=False):
            carrier: dict[str, str] = {}
            inject(carrier)
            for key, value in carrier.items():
                request.headers[key] = value
            response = await inner.handle_async_request(request)
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        span.end()
        raise
    span.set_attribute("http.response.status_code", response.status_code)
    if response.status_code >= 400:
        span.set_status(Status(StatusCode.ERROR))
    span.end()
    return response


__all__ = [
    "ENDPOINT_VARS",
    "Tracing",
    "configured",
    "current",
    "http_transport",
    "otlp_exporter",
    "run_span_id",
    "set_current",
    "trace_hex",
    "trace_id_of",
    "traced",
]
