"""`plait insights` as a subprocess: on the local store of $PLAIT_HOME (seeded with a
history through the store's own calls) and on a server; JSON for scripts, tables and
YAML for people; bad options exit 2 with a message and no traceback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.ops.insights_records import iso
from plait.store.migrate import open_store
from tests.ai.test_insights_seed import T0, History
from tests.ai.test_insights_store import seed_durations, seed_shop, seed_three_causes, steady
from tests.server.conftest import LiveServer, start_server

from .conftest import Plait

HOUR = 3600.0


def seed(url: str, *, failures: bool = True, timings: bool = True) -> dict[str, str]:
    """Three causes of failure (May 2026); a slow nightly run and the shop's history
    (the last days). The slow run's id."""
    store = open_store(url)
    found: dict[str, str] = {}
    try:
        history = History(store)
        if failures:
            seed_three_causes(history, start=T0)
        if timings:
            start = time.time() - 40 * HOUR
            seed_durations(history, "nightly", steady(30), start)
            [found["slow"]] = seed_durations(history, "nightly", [300.0], start + 31 * HOUR)
            seed_shop(history, start=time.time() - 55 * HOUR)
    finally:
        store.close()
    return found


@pytest.fixture
def home(plait_env: dict[str, str]) -> str:
    return f"sqlite:///{Path(plait_env['PLAIT_HOME']) / 'plait.db'}"


def test_failures_on_the_local_store(plait: Plait, home: str) -> None:
    seed(home, timings=False)
    since = iso(T0 - 60)
    as_json = plait("insights", "failures", "--since", since, "--method", "tokens", "--json")
    table = plait("insights", "failures", "--since", since, "--method", "tokens", "--limit", "2")
    # the default method: the offline model of the ai extra, installed here
    only = plait("insights", "failures", "--since", since, "--workflow", "backup", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["method"] == "tokens"
    assert [c["count"] for c in report["clusters"]] == [12, 7, 5]
    assert report["clusters"][0]["workflows"] == ["etl", "report"]
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("2 cluster(s) of 19 failed attempt(s) (tokens)")
    assert "etl/load, report/query" in table.stdout
    assert "backup/dump" in table.stdout
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout)["method"] == "embeddings"
    assert [c["count"] for c in json.loads(only.stdout)["clusters"]] == [7]


def test_anomalies_and_suggestions_on_the_local_store(plait: Plait, home: str) -> None:
    local = seed(home, failures=False)
    found = plait("insights", "anomalies", "--workflow", "nightly", "--json")
    table = plait("insights", "anomalies", "--workflow", "nightly")
    advice = plait("insights", "suggestions", "--json")
    words = plait("insights", "suggestions", "--workflow", "shop")
    assert found.returncode == 0, found.stderr
    anomalies = json.loads(found.stdout)["anomalies"]
    assert [(a["run_id"], a["step"], a["direction"]) for a in anomalies] == [
        (local["slow"], None, "slow"),
        (local["slow"], "work", "slow"),
    ]
    assert local["slow"] in table.stdout
    assert "5m00s" in table.stdout
    suggestions = {(s["step"], s["kind"]): s for s in json.loads(advice.stdout)["suggestions"]}
    assert suggestions[("slow", "timeout")]["suggested"] == {"timeout": "4m"}
    assert words.returncode == 0, words.stderr
    assert "shop / slow: timeout" in words.stdout
    assert "    timeout: 4m" in words.stdout
    assert "shop / flaky: retries" in words.stdout
    assert "    retries: 0" in words.stdout


def test_nothing_found_is_said_and_exits_0(plait: Plait) -> None:
    none = plait("insights", "anomalies")
    empty = plait("insights", "failures", "--json")
    assert none.returncode == 0, none.stderr
    assert none.stdout.strip() == "no anomalies"
    assert json.loads(empty.stdout)["clusters"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["failures", "--since", "last tuesday"],
            "error: --since: since 'last tuesday' is neither",
        ),
        (["anomalies", "--since", "soon"], "error: --since:"),
        (["failures", "--method", "magic"], "error: --method 'magic': write auto"),
        (["anomalies", "--limit", "0"], "--limit"),
    ],
)
def test_bad_options_exit_2(plait: Plait, args: list[str], message: str) -> None:
    res = plait("insights", *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


@pytest.fixture
def remote(
    tmp_path: Path, plait_env: dict[str, str]
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    url = f"sqlite:///{tmp_path / 'srv' / 'p.db'}"
    live, runner = start_server(tmp_path / "srv", url)
    plait_env["PLAIT_SERVER"] = live.url
    plait_env["PLAIT_TOKEN"] = live.token
    try:
        yield live, seed(url)
    finally:
        runner.stop()
        live.services.store.close()


def test_the_same_document_from_a_server(
    plait: Plait, remote: tuple[LiveServer, dict[str, str]]
) -> None:
    live, seeded = remote
    found = plait("insights", "anomalies", "--workflow", "nightly", "--json")
    assert found.returncode == 0, found.stderr
    with live.client() as c:
        direct = c.get("/api/v1/insights/anomalies", params={"workflow": "nightly", "since": "7d"})
    assert json.loads(found.stdout) == direct.json()
    assert json.loads(found.stdout)["anomalies"][0]["run_id"] == seeded["slow"]
    refused = plait("insights", "failures", "--method", "tokens")
    assert refused.returncode == 2
    assert "--method applies to the local store" in refused.stderr
    bad = plait("insights", "failures", "--since", "whenever")
    assert bad.returncode == 2
    assert "since 'whenever' is neither" in bad.stderr
