"""`plait alerts` as a subprocess, on a server and on the local store; and the real
`plait serve` applying $PLAIT_HOME/alerts.yaml and notifying a webhook once."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import LiveServer, start_server
from tests.server.test_alerts import Receiver

from .conftest import Plait
from .test_serve_durability import PASSWORD, Serve, _port, _wait_run

RULES = """\
deploy-failures:
  kind: failure_rate
  threshold: 1%
  min_runs: 5
  severity: warning
  channels: [ops]
slow-runs:
  kind: run_duration
  threshold: 30m
  severity: info
"""


@pytest.fixture
def remote(tmp_path: Path, plait_env: dict[str, str]) -> Iterator[LiveServer]:
    live, runner = start_server(tmp_path / "srv", f"sqlite:///{tmp_path / 'srv' / 'p.db'}")
    plait_env["PLAIT_SERVER"] = live.url
    plait_env["PLAIT_TOKEN"] = live.token
    try:
        yield live
    finally:
        runner.stop()
        live.services.store.close()


def test_rules_on_a_server(remote: LiveServer, plait: Plait, tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    made = plait("alerts", "set", str(rules))
    again = plait("alerts", "set", str(rules), "--json")
    listed = plait("alerts", "rules", "--json")
    one = plait("alerts", "rules", "slow-runs", "--json")
    table = plait("alerts", "rules")
    alerts = plait("alerts", "list", "--json")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == ["deploy-failures created", "slow-runs created"]
    assert [r["created"] for r in json.loads(again.stdout)] == [False, False]
    assert [r["name"] for r in json.loads(listed.stdout)] == ["deploy-failures", "slow-runs"]
    assert json.loads(one.stdout)["spec"]["threshold"] == "30m"
    assert "deploy-failures" in table.stdout
    assert "failure_rate" in table.stdout
    assert json.loads(alerts.stdout) == []
    gone = plait("alerts", "delete", "slow-runs")
    missing = plait("alerts", "delete", "slow-runs")
    assert gone.returncode == 0
    assert gone.stdout.strip() == "slow-runs deleted"
    assert missing.returncode == 2
    assert "not found" in missing.stderr


def test_an_invalid_rules_file_writes_nothing(
    remote: LiveServer, plait: Plait, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES + "broken:\n  kind: failure_rate\n  threshold: lots\n")
    res = plait("alerts", "set", str(bad))
    assert res.returncode == 2
    assert f"{bad}: rule 'broken': threshold: 'lots' is not a ratio" in res.stderr
    assert "Traceback" not in res.stderr
    assert json.loads(plait("alerts", "rules", "--json").stdout) == []
    state = plait("alerts", "list", "--state", "nope")
    assert state.returncode == 2


def test_rules_on_the_local_store(plait: Plait, tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    made = plait("alerts", "set", str(rules), "--json")
    assert made.returncode == 0, made.stderr
    assert [r["source"] for r in json.loads(made.stdout)] == ["api", "api"]
    listed = json.loads(plait("alerts", "rules", "--json").stdout)
    assert [r["name"] for r in listed] == ["deploy-failures", "slow-runs"]
    assert plait("alerts", "list").stdout.strip() == "no alerts"
    assert plait("alerts", "delete", "deploy-failures").returncode == 0
    unknown = plait("alerts", "rules", "deploy-failures")
    assert unknown.returncode == 2
    assert "alert rule 'deploy-failures' not found" in unknown.stderr


def test_plait_serve_applies_alerts_yaml_and_notifies_once(
    tmp_path: Path, plait: Plait, plait_env: dict[str, str]
) -> None:
    receiver = Receiver()
    home = tmp_path / "home"
    home.mkdir()
    (home / "alerts.yaml").write_text(
        "failing:\n  kind: failure_rate\n  threshold: 10%\n  channels: [ops]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(
        PLAIT_HOME=str(home),
        PLAIT_ADMIN_USER="admin",
        PLAIT_ADMIN_PASSWORD=PASSWORD,
        PLAIT_ALERT_INTERVAL="0.5",
        PLAIT_CHANNEL_OPS=receiver.url,
    )
    serve = Serve(env, _port())
    try:
        serve.start()
        with serve.client() as c:
            source = "name: broken\nsteps:\n  - id: boom\n    run: exit 5\n"
            r = c.post(
                "/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"}
            )
            assert r.status_code == 201, r.text
            run_id = c.post("/api/v1/workflows/broken/runs", json={"inputs": {}}).json()["id"]
            assert _wait_run(c, run_id)["status"] == "failed"
            [fired] = receiver.wait("failing", 1)
            time.sleep(2.0)  # four more passes
            assert len(receiver.of("failing")) == 1
            token = c.headers["Authorization"].removeprefix("Bearer ")
        assert fired["severity"] == "warning"
        assert "broken: 1 of 1 runs failed (100%)" in fired["text"]
        plait_env.update(PLAIT_SERVER=serve.url, PLAIT_TOKEN=token)
        shown = plait("alerts", "list", "--json")
        rules = plait("alerts", "rules", "--json")
        [alert] = json.loads(shown.stdout)
        assert alert["state"] == "firing"
        assert alert["rule"] == "failing"
        assert alert["key"] == "broken"
        assert [r["source"] for r in json.loads(rules.stdout)] == ["file"]
        refused = plait("alerts", "delete", "failing")
        assert refused.returncode == 1
        assert "comes from alerts.yaml" in refused.stderr
    finally:
        serve.stop()
        receiver.httpd.shutdown()
