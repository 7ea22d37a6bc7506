"""The compiled, immutable plan of a workflow: what the engine runs.

A workflow spec (pydantic, with positions for error messages) is validated and compiled
once into a :class:`Plan`. The plan is a flat map of nodes — action steps and the
``parallel``/``sequence`` groups that contain them — with every default and inherited
setting resolved, so the engine never looks at the spec again.

Ordering rules, as compiled here (DESIGN §1 "Ordering"):

* ``deps`` of a node are exactly the nodes it waits for *within its own container*: its
  explicit ``needs``, or else the node listed before it in a ``sequence`` (or at the top
  level of a phase); children of a ``parallel`` group without ``needs`` have no deps.
* A node also waits for its enclosing group to *start*: the engine only considers a
  child once its parent group is running. So a group's deps apply to all its children.
* A group ends when all its children have ended.
* The three phases — ``main`` (``steps:``), ``on_failure`` and ``finally`` — are
  separate graphs; ``deps`` never cross phases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Phase = Literal["main", "on_failure", "finally"]
NodeKind = Literal["action", "parallel", "sequence"]
OnError = Literal["fail", "continue", "retry"]
Backoff = Literal["exponential", "linear", "constant"]

PHASES: tuple[Phase, ...] = ("main", "on_failure", "finally")

#: Status functions an ``if:`` may call. An ``if`` that calls none of them is implicitly
#: ``success() and (...)``, as in GitHub Actions.
STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how fast a failed step is tried again.

    ``max`` counts retries, not attempts: ``max=2`` allows three attempts. Durations are
    in seconds. ``jitter`` spreads each delay over ``[delay/2, delay]``.
    """

    max: int = 0
    backoff: Backoff = "exponential"
    initial: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: bool = False


NO_RETRY = RetryPolicy(max=0)
#: What ``on_error: retry`` means for a step without its own policy (DESIGN §1).
DEFAULT_ON_ERROR_RETRY = RetryPolicy(max=3, backoff="exponential", initial=1.0, factor=2.0)


@dataclass(frozen=True, slots=True)
class InputPlan:
    """A declared workflow input."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "object", "array"] = "string"
    required: bool = False
    default: Any = None
    has_default: bool = False
    enum: tuple[Any, ...] | None = None
    secret: bool = False
    description: str | None = None


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One node of the plan: an action step or a group.

    ``with_``, ``env``, ``outputs`` and ``for_each`` hold raw values whose strings may
    contain ``${{ }}`` templates; the runtime renders them just before the step runs.
    ``if_`` is the bare condition source, or ``None`` for "always run when reached".
    """

    key: str
    kind: NodeKind
    phase: Phase
    name: str = ""
    parent: str | None = None
    children: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    uses: str | None = None
    with_: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    if_: str | None = None
    #: True when ``if_`` calls success()/failure()/always()/cancelled() itself.
    if_checks_status: bool = False
    timeout: float | None = None
    retry: RetryPolicy = NO_RETRY
    on_error: OnError = "fail"
    outputs: Mapping[str, Any] | None = None
    for_each: Any = None
    max_parallel: int | None = None
    #: Routing (step > group > ``defaults``): the queue a worker must serve, the tags it
    #: must have (``runs_on``), and the order among due steps (higher first).
    queue: str = "default"
    runs_on: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    #: 1-based line of the step in its source file, 0 when built in Python.
    line: int = 0

    @property
    def is_group(self) -> bool:
        return self.kind != "action"


@dataclass(frozen=True, slots=True)
class ConcurrencyPlan:
    key: str
    limit: int = 1
    on_conflict: Literal["queue", "cancel_running", "skip"] = "queue"


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated workflow, ready to run.

    ``nodes`` holds every node of every phase in definition order (parents before their
    children). ``roots`` lists each phase's top-level nodes; ``dependents`` is the
    reverse of ``deps`` so the engine finds what a finished node unblocks in O(1).
    """

    name: str
    nodes: Mapping[str, StepPlan]
    roots: Mapping[Phase, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]]
    namespace: str = "default"
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, InputPlan] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    concurrency: ConcurrencyPlan | None = None
    triggers: tuple[Mapping[str, Any], ...] = ()
    notify: tuple[Mapping[str, Any], ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)
    #: Names used as ``secrets.<name>`` anywhere in the workflow.
    secret_names: frozenset[str] = frozenset()

    def phase_nodes(self, phase: Phase) -> list[StepPlan]:
        return [n for n in self.nodes.values() if n.phase == phase]
