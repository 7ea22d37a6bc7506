"""The real `plait` command: `logs search` on the local store and on a server, and
`--log-format json` logs that name the run, step and trace."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from plait.ops.tracing import trace_hex
from tests.server.conftest import LiveServer
from tests.server.test_runs import ENDED, deploy, start, wait_for

from .conftest import Plait

CHATTY = """\
name: chatty
steps:
  - id: talk
    run: |
      echo "connection refused by the database"
      echo "Deployment finished"
"""


def test_logs_search_on_the_local_store(plait: Plait, tmp_path: Path) -> None:
    wf = tmp_path / "chatty.yaml"
    wf.write_text(CHATTY)
    ran = plait("run", str(wf), "-q", "--results-dir", str(tmp_path / "res"))
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[1]

    found = plait("logs", "search", "refused")
    assert found.returncode == 0, found.stderr
    assert "connection refused by the database" in found.stdout
    assert run_id in found.stdout
    assert "chatty/talk#1" in found.stdout

    page = json.loads(plait("logs", "search", "deploy*", "--json").stdout)
    (item,) = page["items"]
    assert item["line"] == "Deployment finished"
    assert item["run_id"] == run_id
    assert item["workflow"] == "chatty"
    assert item["highlight"] == [[0, 10]]
    assert page["next_cursor"] is None

    none = plait("logs", "search", "nowhere", "--run", run_id)
    assert none.returncode == 0
    assert none.stdout == ""
    assert "no matching lines" in none.stderr
    bad = plait("logs", "search", '"unclosed')
    assert bad.returncode == 2
    assert "not closed" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_logs_search_on_a_server(live: LiveServer, plait: Plait, plait_env: dict[str, str]) -> None:
    deploy(live, CHATTY)
    with live.client() as c:
        run_id = wait_for(c, start(c, "chatty").json()["id"], ENDED)["id"]
    plait_env["PLAIT_TOKEN"] = live.token
    found = plait("logs", "search", '"connection refused"', "--server", live.url, "--json")
    assert found.returncode == 0, found.stderr
    (item,) = json.loads(found.stdout)["items"]
    assert item["run_id"] == run_id
    assert item["step"] == "talk"
    bad = plait("logs", "search", "alpha", "--since", "soon", "--server", live.url)
    assert bad.returncode == 2
    assert "since" in bad.stderr


def test_json_logs_name_the_run_step_and_trace(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    module = f"chatter_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(
        "import logging\n\n"
        "def talk():\n"
        "    logging.getLogger('plait.user').warning('talking from a step')\n"
        "    return {}\n"
    )
    wf = tmp_path / "py.yaml"
    wf.write_text(
        f"name: pylog\nsteps:\n  - id: speak\n    uses: python\n"
        f'    with: {{function: "{module}:talk"}}\n'
    )
    args = ("run", str(wf), "-q", "--workdir", str(tmp_path), "--results-dir", str(tmp_path))
    done = plait("--log-format", "json", *args)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[1]
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (said,) = [r for r in records if r["message"] == "talking from a step"]
    assert said["level"] == "warning"
    assert said["logger"] == "plait.user"
    assert said["run_id"] == run_id
    assert said["step"] == "speak"
    assert said["attempt"] == 1
    assert said["trace_id"] == trace_hex(run_id) == run_id.replace("-", "")
    assert said["time"].endswith("Z")

    plait_env["PLAIT_LOG_FORMAT"] = "json"  # the variable does the same
    again = plait(*args)
    assert any(json.loads(x)["message"] == "talking from a step" for x in again.stderr.splitlines())
    plait_env["PLAIT_LOG_FORMAT"] = "yaml"
    bad = plait("validate", str(wf))
    assert bad.returncode == 2
    assert "--log-format 'yaml'" in bad.stderr
