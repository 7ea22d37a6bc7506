"""Plait actions: the interface (:mod:`plait.actions.base`), the registry, and the
built-ins (``shell``, ``python``, ``http``, ``sleep``), each imported only when used."""

from plait.actions.base import (
    Action,
    ActionContext,
    ActionFailed,
    ActionInput,
    ActionResult,
    LogSink,
)
from plait.actions.registry import ActionRegistry

__all__ = [
    "Action",
    "ActionContext",
    "ActionFailed",
    "ActionInput",
    "ActionRegistry",
    "ActionResult",
    "LogSink",
]
