"""Start-up stays light: the LLM client, the drafting route and ``plait draft`` import
no HTTP client and nothing of the offline model until a call is made (a fresh
interpreter each, so other tests' imports cannot hide a regression)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "torch", "sentence_transformers", "transformers", "numpy", "pypdf", "docx")

SCRIPT = """
import sys
{imports}
print(",".join(m for m in {heavy!r} if m in sys.modules))
print(",".join(sorted(m for m in sys.modules if m.startswith("plait.ai"))))
"""


def _imported(imports: str) -> tuple[list[str], list[str]]:
    code = SCRIPT.format(imports=imports, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    heavy, ai = out.stdout.splitlines()
    return [m for m in heavy.split(",") if m], [m for m in ai.split(",") if m]


def test_the_client_the_connection_type_and_drafting_import_nothing_heavy() -> None:
    heavy, _ = _imported(
        "import plait.ai.llm, plait.ai.draft, plait.actions.llm\n"
        "from plait.actions.connections import default_types\n"
        "default_types().get('llm').schema()"
    )
    assert heavy == []


def test_the_server_app_with_the_drafts_route_imports_nothing_heavy() -> None:
    heavy, ai = _imported(
        "from plait.server.app import create_app\nimport plait.server.routes.drafts"
    )
    assert heavy == []
    assert "plait.ai.llm" in ai  # the route is wired, yet the model is not loaded


def test_the_cli_registers_plait_draft_without_importing_the_ai_package() -> None:
    heavy, ai = _imported("import plait.cli")
    assert heavy == []
    assert ai == []
