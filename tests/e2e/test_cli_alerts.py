"""`plait alerts` as a subprocess, on a server and on the local store; and the real
`plait serve` applying $PLAIT_HOME/alerts.yaml and notifying a webhook once."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.server.conftest import LiveServer
from tests.server.test_alerts import Receiver

from .conftest import Plait
from .serve_support import Serve, wait_run

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
    serve: Serve, tmp_path: Path, plait: Plait, plait_env: dict[str, str]
) -> None:
    receiver = Receiver()
    home = tmp_path / "home"
    home.mkdir()
    (home / "alerts.yaml").write_text(
        "failing:\n  kind: failure_rate\n  threshold: 10%\n  channels: [ops]\n"
    )
    serve.env.update(PLAIT_ALERT_INTERVAL="0.5", PLAIT_CHANNEL_OPS=receiver.url)
    try:
        serve.start()
        with serve.client() as c:
            source = "name: broken\nsteps:\n  - id: boom\n    run: exit 5\n"
            r = c.post(
                "/api/v1/workflows", content=source, headers={"Content-Type": "application/yaml"}
            )
            assert r.status_code == 201, r.text
            run_id = c.post("/api/v1/workflows/broken/runs", json={"inputs": {}}).json()["id"]
            assert wait_run(c, run_id)["status"] == "failed"
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
