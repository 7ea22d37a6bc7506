"""Plait: durable workflow automation.

Workflows are written in YAML or built in Python::

    from plait import Workflow, Step, parallel, sequence
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from plait.errors import PlaitError

if TYPE_CHECKING:
    from plait.api import Step, Workflow, parallel, sequence

__all__ = ["PlaitError", "Step", "Workflow", "__version__", "parallel", "sequence"]


def __getattr__(name: str) -> Any:
    # The Python API pulls in pydantic models; import it only when asked for, so that
    # `import plait` (and the CLI's start-up) stays cheap.
    if name in {"Workflow", "Step", "parallel", "sequence"}:
        from plait import api

        return getattr(api, name)
    raise AttributeError(f"module 'plait' has no attribute {name!r}")
