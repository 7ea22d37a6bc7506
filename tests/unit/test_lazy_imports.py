"""``plait run`` start-up: what a workflow does not use is not imported."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from plait.actions.registry import ActionRegistry
from plait.model import load_workflow
source = "name: one\\nsteps:\\n  - id: hello\\n    run: 'true'\\n"
load_workflow(source, "one.yaml", ActionRegistry().input_models())
print("jinja2" in sys.modules)
"""


def test_a_workflow_without_expressions_never_imports_jinja2() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_sandbox_names_the_environment_globals() -> None:
    from plait.expr import jinja_env, sandbox

    assert frozenset(jinja_env.ENV.globals) == sandbox.GLOBAL_FUNCTIONS


DOCUMENTS = """
import sys
from plait.actions.registry import ActionRegistry
from plait.model import load_workflow
source = "name: one\\nsteps:\\n  - id: read\\n    uses: doc.extract_text\\n    with: {path: a}\\n"
registry = ActionRegistry()
load_workflow(source, "one.yaml", registry.input_models())
registry.get("doc.extract_text")
heavy = ("pypdf", "docx", "lxml", "torch", "numpy", "sentence_transformers")
print(sorted(name for name in heavy if name in sys.modules))
"""


def test_a_document_step_loads_no_reader_before_it_reads() -> None:
    out = subprocess.run([sys.executable, "-c", DOCUMENTS], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


INSIGHTS = """
import sys
import plait.cli
import plait.server.app
import plait.server.routes.insights
import plait.ops.alert_sources
from plait.ops.insights import Insights
from plait.ops.insights_clusters import items_of, token_groups
items = items_of(["HTTP 503 from a", "disk full at /x/y"], [(), ()])
token_groups(items)
heavy = ("torch", "numpy", "sentence_transformers", "transformers")
print(sorted(name for name in heavy if name in sys.modules))
"""


def test_insights_load_no_model_until_failures_are_clustered_with_it() -> None:
    """The CLI, the server and the token clusters of a minimal install run without
    numpy or the model: only clustering with the offline model imports them."""
    out = subprocess.run([sys.executable, "-c", INSIGHTS], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


AI_STEPS = """
import sys
from plait.actions.registry import ActionRegistry
from plait.model import load_workflow
source = '''
name: ai
steps:
  - {id: c, uses: ai.classify, with: {text: t, labels: [a, b]}}
  - {id: r, uses: ai.route, with: {text: t, routes: {a: x, b: y}}}
  - {id: e, uses: ai.extract, with: {text: t, schema: {properties: {n: {type: string}}}}}
  - {id: s, uses: ai.summarize, with: {text: t}}
  - {id: g, uses: ai.generate, with: {prompt: p, connection: llm}}
  - {id: d, uses: ai.decide, with: {rules: [{when: "x > 1", decision: y}]}}
'''
registry = ActionRegistry()
load_workflow(source, "ai.yaml", registry.input_models())
for name in ("ai.classify", "ai.route", "ai.extract", "ai.summarize", "ai.generate", "ai.decide"):
    registry.get(name)
import plait.ai.embeddings
plait.ai.embeddings.available()
heavy = ("torch", "numpy", "sentence_transformers", "transformers", "httpx")
print(sorted(name for name in heavy if name in sys.modules))
"""


def test_ai_steps_load_no_model_or_numpy_before_they_run() -> None:
    """Validating a workflow of ai.* steps and making their actions (what `plait run`
    and the server do before a step runs) imports neither the model nor numpy."""
    out = subprocess.run([sys.executable, "-c", AI_STEPS], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
