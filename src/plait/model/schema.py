"""The JSON Schema of the workflow format, generated from the models (``plait schema``).

Editors (VS Code's YAML extension, JetBrains, …) use it to validate and complete
workflow files; it accepts what the loader accepts, in YAML's spelling of the keys.
"""

from __future__ import annotations

from typing import Any

from plait.model.spec import WorkflowSpec

SCHEMA_ID = "https://plait.dev/schemas/workflow.json"


def workflow_json_schema() -> dict[str, Any]:
    """A draft 2020-12 JSON Schema of a workflow document."""
    body = WorkflowSpec.model_json_schema(by_alias=True, mode="validation")
    body.pop("title", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Plait workflow",
        "description": "A Plait workflow definition (DESIGN §1).",
        **body,
    }
