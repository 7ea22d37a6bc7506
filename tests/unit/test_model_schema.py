"""The JSON Schema of the workflow format: editors accept what the loader accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from plait.model import workflow_json_schema
from plait.model.yamlload import load_yaml

jsonschema = pytest.importorskip("jsonschema")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = workflow_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_header() -> None:
    schema = workflow_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://")
    assert schema["title"] == "Plait workflow"
    assert schema["required"] == ["name", "steps"]
    json.dumps(schema)


def test_design_example_is_valid(validator: Any) -> None:
    data = load_yaml((DATA / "design_example.yaml").read_text()).data
    assert list(validator.iter_errors(data)) == []


def test_every_key_example_is_valid(validator: Any) -> None:
    import importlib.util

    location = Path(__file__).with_name("test_model_spec.py")
    spec = importlib.util.spec_from_file_location("_every_key", location)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert list(validator.iter_errors(module.EVERY_KEY)) == []


def test_yaml_keys_are_used_not_python_names() -> None:
    text = json.dumps(workflow_json_schema())
    assert '"finally"' in text
    assert '"with"' in text
    assert '"if"' in text
    assert "with_" not in text
    assert "finally_" not in text
    assert "if_" not in text


@pytest.mark.parametrize(
    "doc",
    [
        "name: w\nsteps: [{id: a, run: x, need: b}]\n",
        "name: Bad Name\nsteps: [{id: a, run: x}]\n",
        "name: w\n",
        "name: w\nsteps: [{id: a, run: x, on_error: ignore}]\n",
        "name: w\nsteps: [{id: a, run: x, timeout: [1]}]\n",
        "name: w\ntriggers: [{manual: {}, webhook: {}}]\nsteps: [{id: a, run: x}]\n",
    ],
)
def test_invalid_documents_are_flagged(validator: Any, doc: str) -> None:
    assert list(validator.iter_errors(yaml.safe_load(doc)))
