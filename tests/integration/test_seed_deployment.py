"""The deployment workflow of the workflow automation guide (seed 004), built with the
Python API and run durably: pre-deployment in parallel (backup with a timeout and 2
retries, health check with 3), deploy (on_error fail), post-deployment in parallel
(notify may fail: on_error continue; monitoring)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plait import Step, Workflow, parallel


def _record(path: str, name: str) -> int:
    log = Path(path) / "calls.log"
    with log.open("a") as f:
        f.write(name + "\n")
    return log.read_text().split().count(name)


def backup_database(path: str) -> dict[str, str]:
    _record(path, "backup")
    return {"backup": "db-2026.sql"}


def health_check(path: str) -> dict[str, bool]:
    if _record(path, "health") < 3:  # flaky: healthy on the third try
        raise ConnectionError("service not ready")
    return {"healthy": True}


def deploy_app(path: str, version: str) -> dict[str, str]:
    _record(path, "deploy")
    if version == "bad":
        raise RuntimeError("deployment failed")
    return {"url": f"https://api.example.com/{version}"}


def notify_team(path: str) -> None:
    _record(path, "notify")
    raise OSError("chat is down")


def update_monitoring(path: str) -> dict[str, str]:
    _record(path, "monitoring")
    return {"dashboard": "updated"}


def deployment(path: str) -> Workflow:
    fast = {"max": 3, "backoff": "constant", "initial": "10ms"}
    return Workflow(
        "deployment",
        inputs={"version": {"type": "string", "required": True}},
        steps=[
            parallel(
                Step(
                    id="backup",
                    function=backup_database,
                    args={"path": path},
                    timeout="5m",
                    retries={**fast, "max": 2},
                ),
                Step(id="health-check", function=health_check, args={"path": path}, retries=fast),
                id="pre-deployment",
            ),
            Step(
                id="deploy",
                function=deploy_app,
                args={"path": path, "version": "${{ inputs.version }}"},
                on_error="fail",
            ),
            parallel(
                Step(id="notify", function=notify_team, args={"path": path}, on_error="continue"),
                Step(id="monitoring", function=update_monitoring, args={"path": path}),
                id="post-deployment",
            ),
        ],
        outputs={"url": "${{ steps.deploy.outputs.url }}"},
    )


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path / "home"))


def test_seed_deployment_succeeds(tmp_path: Path) -> None:
    result = deployment(str(tmp_path)).run(inputs={"version": "1.4.2"})
    assert result.success, result
    status = {s.id: s.status for s in result.steps}
    assert status == {
        "pre-deployment": "succeeded",
        "backup": "succeeded",
        "health-check": "succeeded",
        "deploy": "succeeded",
        "post-deployment": "succeeded",
        "notify": "failed",
        "monitoring": "succeeded",
    }
    assert result.step("health-check").attempts == 3
    assert result.outputs == {"url": "https://api.example.com/1.4.2"}
    calls = (tmp_path / "calls.log").read_text().split()
    assert calls.count("deploy") == 1
    assert calls.count("monitoring") == 1
    json.dumps(result.to_dict())  # the result file shape is plain JSON


def test_seed_deployment_failure_stops_the_run(tmp_path: Path) -> None:
    result = deployment(str(tmp_path)).run(inputs={"version": "bad"})
    assert result.status == "failed"
    status = {s.id: s.status for s in result.steps}
    assert status["deploy"] == "failed"
    assert status["notify"] == "skipped"
    assert status["monitoring"] == "skipped"
    assert "RuntimeError: deployment failed" in (result.step("deploy").error or "")
