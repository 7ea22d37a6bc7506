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
