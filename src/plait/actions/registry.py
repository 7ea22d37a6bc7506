"""Which actions exist: the built-ins and those installed packages provide.

Third-party packages register Action classes under the ``plait.actions`` entry point
group; the entry point's name is the name steps use (``uses: <name>``)::

    [project.entry-points."plait.actions"]
    jira = "plait_jira:JiraAction"

Entry points are read only when a name is not built-in or when every action is listed,
and built-in modules are imported only when used, so importing this module (and
running a workflow of shell steps) pulls in neither httpx nor third-party code. A
package whose entry point fails to load is reported by name with its error, and the
other actions stay usable.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

from pydantic import BaseModel

from plait.actions.base import Action
from plait.errors import PlaitError, UnknownAction

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "plait.actions"

#: name -> "module:Class", imported on first use
BUILTINS: dict[str, str] = {
    "shell": "plait.actions.shell:ShellAction",
    "python": "plait.actions.python:PythonAction",
    "http": "plait.actions.http:HttpAction",
    "sleep": "plait.actions.sleep:SleepAction",
    "approval": "plait.actions.approval:ApprovalAction",
    "workflow": "plait.actions.subworkflow:WorkflowAction",
    "notify": "plait.actions.notify:NotifyAction",
    "sql": "plait.actions.sql:SqlAction",
    "git": "plait.actions.git:GitAction",
    "file": "plait.actions.files:FileAction",
    "archive": "plait.actions.archive:ArchiveAction",
    "s3": "plait.actions.s3:S3Action",
    "rabbitmq.publish": "plait.actions.publish:RabbitMqPublish",
    "redis.publish": "plait.actions.publish:RedisPublish",
    "nats.publish": "plait.actions.publish:NatsPublish",
    "mqtt.publish": "plait.actions.publish:MqttPublish",
    "ai.classify": "plait.actions.ai:ClassifyAction",
    "ai.route": "plait.actions.ai:RouteAction",
    "ai.extract": "plait.actions.ai_extract:ExtractAction",
    "ai.summarize": "plait.actions.ai_text:SummarizeAction",
    "ai.generate": "plait.actions.ai_text:GenerateAction",
    "ai.decide": "plait.actions.ai_decide:DecideAction",
    "doc.extract_text": "plait.actions.documents:ExtractTextAction",
}


class ActionRegistry:
    """Action classes by name, and one shared instance of each (made on first use)."""

    def __init__(
        self, *, builtins: bool = True, entry_point_group: str | None = ENTRY_POINT_GROUP
    ) -> None:
        self._lazy: dict[str, str] = dict(BUILTINS) if builtins else {}
        self._classes: dict[str, type[Action]] = {}
        self._sources: dict[str, str] = dict.fromkeys(self._lazy, "builtin")
        self._instances: dict[str, Action] = {}
        self._group = entry_point_group
        self._entry_points_loaded = entry_point_group is None
        #: why each broken entry point could not be loaded, by action name
        self.broken: dict[str, str] = {}

    # -- lookup ------------------------------------------------------------------------
    def get(self, name: str) -> Action:
        """The instance of action ``name``; UnknownAction (with a suggestion) if none."""
        instance = self._instances.get(name)
        if instance is None:
            instance = self._instances[name] = self.get_class(name)()
        return instance

    def get_class(self, name: str) -> type[Action]:
        cls = self._classes.get(name)
        if cls is not None:
            return cls
        if name in self._lazy:
            return self._import(name)
        if not self._entry_points_loaded:
            self._load_entry_points()
            if name in self._classes or name in self._lazy:
                return self.get_class(name)
        raise self._unknown(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def names(self) -> list[str]:
        """Every action name, sorted (reads the entry points)."""
        self._load_entry_points()
        return sorted({*self._lazy, *self._classes})

    def input_models(self) -> Mapping[str, type[BaseModel]]:
        """The input model of every action (what the workflow validator checks
        ``with:`` against), as a mapping that imports an action only when a workflow
        uses it — validating a file of shell steps imports neither httpx nor boto3."""
        return _InputModels(self)

    def describe(self) -> list[dict[str, Any]]:
        """Name, version, description, source and JSON Schemas of every action."""
        result = []
        for name in self._loadable():
            cls = self.get_class(name)
            result.append(
                {
                    "name": name,
                    "version": cls.version,
                    "description": cls.description or (cls.__doc__ or "").strip(),
                    "source": self._sources.get(name, "registered"),
                    "input_schema": cls.input_schema(),
                    "output_schema": cls.output_schema(),
                }
            )
        return result

    # -- registration ------------------------------------------------------------------
    def register(
        self, cls: type[Action], *, name: str | None = None, replace: bool = False
    ) -> None:
        """Add an action class (under ``name``, default ``cls.name``)."""
        name = name or getattr(cls, "name", None)
        _check_class(cls, name or "?")
        assert name is not None
        if not replace and (name in self._classes or name in self._lazy):
            raise PlaitError(f"an action named {name!r} is already registered")
        self._lazy.pop(name, None)
        self._instances.pop(name, None)
        self._classes[name] = cls
        self._sources.setdefault(name, "registered")

    async def aclose(self) -> None:
        """Let the instances release what they hold (HTTP connections, scratch files)."""
        for instance in list(self._instances.values()):
            close = getattr(instance, "aclose", None)
            if close is not None:
                await close()
        self._instances.clear()

    # -- internals ---------------------------------------------------------------------
    def _loadable(self) -> list[str]:
        return [name for name in self.names() if name not in self.broken]

    def _import(self, name: str) -> type[Action]:
        module_name, _, attr = self._lazy[name].partition(":")
        cls: type[Action] = getattr(importlib.import_module(module_name), attr)
        del self._lazy[name]
        self._classes[name] = cls
        return cls

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._group is None:
            return
        self._entry_points_loaded = True
        for entry_point in metadata.entry_points(group=self._group):
            self._load_entry_point(entry_point)

    def _load_entry_point(self, entry_point: metadata.EntryPoint) -> None:
        name = entry_point.name
        package = _package(entry_point)
        if name in self._lazy or name in self._classes:
            # A package must not be able to replace `shell` (or another package's action)
            # just by being installed.
            logger.warning("action %r from %s ignored: the name is taken", name, package)
            return
        try:
            cls = entry_point.load()
            _check_class(cls, name)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.broken[name] = f"{package} ({entry_point.value}): {reason}"
            logger.warning("action %r from %s could not be loaded: %s", name, package, reason)
            return
        self._classes[name] = cls
        self._sources[name] = package

    def _unknown(self, name: str) -> UnknownAction:
        if name in self.broken:
            return UnknownAction(
                f"action {name!r} is installed but failed to load: {self.broken[name]}"
            )
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return UnknownAction(
            f"unknown action {name!r}{hint} (available: {', '.join(known) or 'none'})"
        )


class _InputModels(Mapping[str, type[BaseModel]]):
    def __init__(self, registry: ActionRegistry) -> None:
        self._registry = registry

    def __getitem__(self, name: str) -> type[BaseModel]:
        try:
            return self._registry.get_class(name).Input
        except UnknownAction:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._registry._loadable()

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry._loadable())

    def __len__(self) -> int:
        return len(self._registry._loadable())


def _check_class(cls: Any, name: str) -> None:
    """A clear error for an entry point or registration that is not an Action class."""
    if not (isinstance(cls, type) and issubclass(cls, Action)):
        raise PlaitError(f"{cls!r} is not a subclass of plait.actions.Action")
    if not name or not isinstance(name, str):
        raise PlaitError(f"{cls.__qualname__} has no action name")
    if not (isinstance(cls.Input, type) and issubclass(cls.Input, BaseModel)):
        raise PlaitError(f"{cls.__qualname__}.Input is not a pydantic model")


def _package(entry_point: metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "an unknown package"
    return f"{dist.metadata['Name']} {dist.version}"
