"""The workflow model: spec (pydantic), YAML loading with positions, validation,
compilation into a :class:`~plait.model.plan.Plan`, input checks and the JSON Schema.

Names are imported on first use so that importing ``plait.model.plan`` (which the
engine does) does not pull in pydantic, PyYAML and Jinja.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plait.model.compile import compile_spec
    from plait.model.inputs import validate_inputs
    from plait.model.schema import workflow_json_schema
    from plait.model.spec import StepSpec, WorkflowSpec
    from plait.model.validate import LoadedWorkflow, load_file, load_workflow

_EXPORTS = {
    "load_workflow": "plait.model.validate",
    "load_file": "plait.model.validate",
    "LoadedWorkflow": "plait.model.validate",
    "compile_spec": "plait.model.compile",
    "validate_inputs": "plait.model.inputs",
    "workflow_json_schema": "plait.model.schema",
    "WorkflowSpec": "plait.model.spec",
    "StepSpec": "plait.model.spec",
}

__all__ = [
    "LoadedWorkflow",
    "StepSpec",
    "WorkflowSpec",
    "compile_spec",
    "load_file",
    "load_workflow",
    "validate_inputs",
    "workflow_json_schema",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'plait.model' has no attribute {name!r}")
    return getattr(import_module(module), name)
