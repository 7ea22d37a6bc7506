"""The action interface: a named, versioned unit with typed input and output.

An action is a class with a ``name``, a ``version``, a pydantic ``Input`` model (the
step's ``with:`` is validated against it), an optional ``Output`` model, a
``description`` and ``async execute(ctx, input) -> ActionResult``. Built-ins live in
this package; third-party packages register classes under the ``plait.actions`` entry
point group, so installing a package adds actions.

An action fails by raising (any exception becomes a failed attempt whose error is the
exception's message; :class:`ActionFailed` carries partial outputs). It asks to wait —
a durable sleep, an approval — by returning ``ActionResult(suspend_until=…)``; when the
timer is due the runtime calls :meth:`Action.resume`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from plait.errors import ActionError, PlaitError

if TYPE_CHECKING:
    from plait.actions.connections import Connection


class ActionInput(BaseModel):
    """Base for action inputs: unknown keys in ``with:`` are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@dataclass
class ActionResult:
    """What an attempt produced. ``suspend_until`` (epoch seconds) makes the step wait;
    ``wait_reason`` says on what (shown as the step's reason)."""

    outputs: dict[str, Any] = field(default_factory=dict)
    suspend_until: float | None = None
    wait_reason: str | None = None


class ActionFailed(ActionError):
    """A failure the action reports on purpose, optionally with partial outputs.

    ``retryable=False`` tells the engine that trying again cannot help; ``retry_after``
    (seconds) that the other side asked for a pause (HTTP ``Retry-After``), so the next
    retry waits at least that long.
    """

    def __init__(
        self,
        message: str,
        outputs: Mapping[str, Any] | None = None,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.outputs = dict(outputs or {})
        self.retryable = retryable
        self.retry_after = retry_after


LogSink = Callable[[str, str], None]
"""``sink(stream, line)``: appends one line to the run log (masked by the runtime)."""


class Prestarted(Protocol):
    """Work an action began before its attempt's start was committed, held back from
    any effect until :meth:`Action.execute` lets it go.

    The runtime calls :meth:`abort` when the start is not committed (or the attempt
    never reaches ``execute``); it must undo the preparation without any effect having
    happened, and is a no-op once ``execute`` took the work over.
    """

    def abort(self) -> None: ...


@dataclass
class ActionContext:
    """What an action may know and use about the attempt it runs.

    ``idempotency_key`` (``run_id:step:attempt``) is stable across an interrupted attempt
    and its restart only in its first two parts: actions with external side effects
    should use ``run_id`` and ``step`` to make them idempotent (DESIGN §3).
    """

    run_id: str
    workflow: str
    step: str
    attempt: int
    workdir: Path
    env: dict[str, str]
    log: LogSink
    mask: Callable[[str], str]
    deadline: float | None = None
    namespace: str = "default"
    #: for ``uses: workflow`` and other server-side actions (set by the runtime)
    services: Mapping[str, Any] = field(default_factory=dict)
    #: resolves a connection name (set by the runtime; see :meth:`connection`)
    connections: Callable[[str], Connection] | None = None
    #: adds a value to the run's masking (set by the runtime; see :meth:`add_secret`)
    secret_sink: Callable[[str], None] | None = None
    #: what :meth:`Action.prestart` began for this attempt, now committed (or None)
    prestarted: Prestarted | None = None

    def connection(self, name: str) -> Connection:
        """The connection ``name`` of this run's namespace, credentials revealed and
        already masked in the run's logs. A missing one fails the attempt for good."""
        if self.connections is None:
            raise ActionFailed("connections are not available here", retryable=False)
        try:
            return self.connections(name)
        except PlaitError as exc:
            raise ActionFailed(str(exc), retryable=False) from None

    def add_secret(self, value: str) -> None:
        """Mask ``value`` in this run's logs, errors and outputs from now on: for
        credentials an action obtains at run time (an OAuth2 access token), which the
        runtime cannot know in advance the way it knows secrets and connections."""
        if self.secret_sink is not None and value:
            self.secret_sink(value)

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.step}:{self.attempt}"


class Action:
    """Base class of actions. Subclasses set the class attributes and ``execute``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    Input: ClassVar[type[BaseModel]] = ActionInput
    Output: ClassVar[type[BaseModel] | None] = None

    #: whether :meth:`prestart` may begin work before the attempt's start is committed
    prestarts: ClassVar[bool] = False

    async def execute(self, ctx: ActionContext, input: Any) -> ActionResult:
        raise NotImplementedError

    def prestart(self, ctx: ActionContext, input: Any) -> Prestarted | None:
        """Begin the slow, effect-free part of an attempt while the runtime commits its
        start (DESIGN §3: no effect before that commit), e.g. a process started up to
        the point of running the step's command. Called on the event loop, so it must
        not block for long; ``execute`` then finds the result in ``ctx.prestarted``.
        Returns None when there is nothing to begin early (the default)."""
        return None

    async def resume(self, ctx: ActionContext, input: Any) -> ActionResult:
        """Called when a suspended step's timer is due. The default ends the wait with
        no outputs (what a sleep wants)."""
        return ActionResult()

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        return cls.Input.model_json_schema()

    @classmethod
    def output_schema(cls) -> dict[str, Any] | None:
        return cls.Output.model_json_schema() if cls.Output else None
