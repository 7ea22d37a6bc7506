"""One exception root for Plait, with domain subclasses.

Driver and library errors are wrapped in one of these, keeping the original as
``__cause__``, so callers handle Plait's failures without knowing its dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


class PlaitError(Exception):
    """Root of every error Plait raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a workflow file, at a position in it.

    ``line`` and ``col`` are 1-based; 0 means the position is not known.
    """

    message: str
    file: str = "<workflow>"
    line: int = 0
    col: int = 0
    path: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}: {self.message}"
        return f"{self.file}: {self.message}"

    def short(self) -> str:
        """The problem as ``LINE:COL: message`` (the API reports it without the file)."""
        return f"{self.line}:{self.col}: {self.message}" if self.line else self.message


class ValidationError(PlaitError):
    """A workflow definition or its inputs are not valid; carries every problem at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InputError(ValidationError):
    """The inputs given to a run do not match the workflow's declared inputs."""


class ExpressionError(PlaitError):
    """An expression could not be parsed or evaluated; the message shows the expression."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"expression {expression!r}: {reason}")


class ActionError(PlaitError):
    """An action failed in a way it reports as a step failure (not a bug in Plait)."""


class UnknownAction(PlaitError):
    """A step names an action that no installed package provides."""


class StoreError(PlaitError):
    """The store could not do what was asked; the driver's error is the ``__cause__``."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (down, restarting, connection cut):
    worth trying again after a pause. The API answers 503 with ``Retry-After``."""


class NotFound(StoreError):
    """A run, workflow or other record does not exist."""


class ConflictError(StoreError):
    """Another process changed the record first (optimistic concurrency lost)."""
