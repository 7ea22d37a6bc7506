"""Insights over HTTP on a live server (SQLite): failure clusters, anomalies and
suggestions from seeded histories, in the pinned shapes; a slow run flagged in its
detail — the fast path's answer byte for byte the route's — and in the list, and an
``anomaly`` alert rule that fires through a real webhook once, then resolves; callers
see only their namespaces; bad input gets a 4xx in the error shape.

The server evaluates no alert rules by itself (``PLAIT_ALERT_INTERVAL=0``): the test
drives :class:`AlertService` passes at chosen times, as tests/server/test_alerts.py
does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from plait.ops.alert_service import AlertService
from plait.ops.insights_records import iso
from plait.server import fastpath
from plait.server.bootstrap import create_user
from tests.ai.test_insights_seed import T0, History, fail
from tests.ai.test_insights_store import seed_shop, seed_three_causes, steady

from .conftest import LiveServer
from .test_alerts import INBOXES, Receiver, _server, put_rule, tick
from .test_runs import deploy

HOUR = 3600.0
NIGHTLY = """\
name: nightly
namespace: team-a
steps:
  - id: work
    run: ./backup.sh
"""
OTHER = """\
name: elsewhere
namespace: team-b
steps:
  - id: work
    run: ./other.sh
"""


@pytest.fixture(scope="module")
def manual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("insights") / "home"
    yield from _server("sqlite", home, "0")


@pytest.fixture(scope="module")
def nightly(manual: LiveServer) -> dict[str, Any]:
    """Deployed ``nightly`` (team-a): 30 steady runs of about a minute ending two
    hours ago, then a slow one (5 min) and a normal one; ``elsewhere`` (team-b) has
    one failure."""
    deploy(manual, NIGHTLY)
    deploy(manual, OTHER)
    services = manual.services
    version = services.server_store.get_workflow("nightly").version_id
    history = History(services.store)
    start = time.time() - 40 * HOUR
    for i, took in enumerate(steady(30)):
        history.simple("nightly", took, at=start + i * HOUR, namespace="team-a", version_id=version)
    later = start + 32 * HOUR
    slow = history.simple("nightly", 300.0, at=later, namespace="team-a", version_id=version)
    normal = history.simple(
        "nightly", 61.0, at=later + HOUR, namespace="team-a", version_id=version
    )
    other = services.server_store.get_workflow("elsewhere").version_id
    history.run(
        "elsewhere",
        {"work": [fail("permission denied: /srv/other/data")]},
        at=later,
        namespace="team-b",
        version_id=other,
    )
    return {"slow": slow, "normal": normal, "slow_ends": later + 300.0}


def get(server: LiveServer, path: str, token: str | None = None, **params: Any) -> Any:
    with server.client(token) as c:
        return c.get(f"/api/v1{path}", params=params)


# -- failures ------------------------------------------------------------------------------
def test_failure_clusters_in_the_pinned_shape(manual: LiveServer) -> None:
    ends = seed_three_causes(History(manual.services.store), start=T0)
    r = get(manual, "/insights/failures", since=iso(T0 - 60), namespace="default")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] in ("embeddings", "tokens")
    assert [c["count"] for c in body["clusters"]] == [12, 7, 5]
    refused = body["clusters"][0]
    assert set(refused) == {
        "id", "label", "count", "first_seen", "last_seen", "workflows", "steps", "examples"
    }  # fmt: skip
    assert refused["first_seen"] == iso(min(ends["refused"]))
    assert refused["last_seen"] == iso(max(ends["refused"]))
    assert refused["workflows"] == ["etl", "report"]
    assert refused["steps"] == [
        {"workflow": "etl", "step": "load", "count": 8},
        {"workflow": "report", "step": "query", "count": 4},
    ]
    example = refused["examples"][0]
    assert set(example) == {"run_id", "workflow", "step", "attempt", "error", "at"}
    assert example["at"] == iso(max(ends["refused"]))
    one = get(manual, "/insights/failures", since=iso(T0 - 60), workflow="backup")
    assert [c["count"] for c in one.json()["clusters"]] == [7]
    assert (
        get(manual, "/insights/failures", since=iso(T0 - 60), limit=1).json()["clusters"][0][
            "count"
        ]
        == 12
    )


# -- anomalies -----------------------------------------------------------------------------
@pytest.fixture
def fast_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the status poll's fast path answered itself (the server runs in this
    process), as in test_fastpath.py."""
    answered: list[str] = []
    original = fastpath.FastRunReads._answer

    async def counting(self: Any, scope: Any, send: Any, run_id: str) -> bool:
        done = await original(self, scope, send, run_id)
        if done:
            answered.append(scope["path"])
        return done

    monkeypatch.setattr(fastpath.FastRunReads, "_answer", counting)
    return answered


def test_a_slow_run_is_flagged_in_its_detail_and_in_the_list(
    manual: LiveServer, nightly: dict[str, Any], fast_answers: list[str]
) -> None:
    slow, normal = nightly["slow"], nightly["normal"]
    with manual.client() as c:
        c.get("/api/v1/runs", params={"limit": 1})  # the token is known to the fast path
        fast = c.get(f"/api/v1/runs/{slow}")  # the status poll's fast path
        routed = c.get(f"/api/v1/runs/{slow}", params={"via": "route"})  # a query: the route
        plain = c.get(f"/api/v1/runs/{normal}").json()
    time.sleep(0.3)  # the fast path notes an answer just after sending it
    assert f"/api/v1/runs/{slow}" in fast_answers
    assert fast.status_code == routed.status_code == 200, fast.text
    assert fast.content == routed.content
    flag = fast.json()["anomaly"]
    assert flag["direction"] == "slow"
    assert flag["duration"] == 300.0
    assert flag["median"] == 60.0
    assert flag["score"] == round(0.6745 * 240 / 1.0, 2)
    assert set(flag) == {"score", "duration", "median", "direction"}
    assert plain["anomaly"] is None
    assert fast.json()["steps"][0]["id"] == "work"  # the rest of the detail is unchanged

    listed = get(manual, "/insights/anomalies", workflow="nightly", since="2d").json()
    assert [(a["run_id"], a["step"]) for a in listed["anomalies"]] == [(slow, None), (slow, "work")]
    run = listed["anomalies"][0]
    assert set(run) == {
        "run_id", "workflow", "step", "duration", "median", "mad", "score", "direction", "at"
    }  # fmt: skip
    assert (run["score"], run["median"], run["mad"]) == (flag["score"], 60.0, 1.0)
    assert run["at"] == iso(nightly["slow_ends"])
    assert get(manual, "/insights/anomalies", workflow="nightly", since="1m").json() == {
        "anomalies": []
    }


def test_the_anomaly_rule_fires_once_then_resolves(
    manual: LiveServer, nightly: dict[str, Any]
) -> None:
    receiver: Receiver = INBOXES[manual.url]
    put_rule(
        manual,
        "nightly-unusual",
        {"kind": "anomaly", "workflow": "nightly", "window": "1d", "channels": ["ops"]},
    )
    service = AlertService(manual.services)
    try:
        now = time.time()
        tick(service, now)
        tick(service, now + 60)  # still flagged: no second notice
        [fired] = receiver.wait("nightly-unusual", 1)
        assert fired["status"] == "firing"
        assert fired["run_id"] == nightly["slow"]
        assert fired["workflow"] == "nightly"
        assert fired["value"] == round(0.6745 * 240, 2)
        assert fired["threshold"] == 3.5
        assert f"run {nightly['slow']} of nightly took 5m00s, 5.0× slower" in fired["text"]
        tick(service, now + 2 * 86400)  # the slow run has left the window
        _, resolved = receiver.wait("nightly-unusual", 2)
        assert resolved["status"] == "resolved"
        time.sleep(0.3)
        assert len(receiver.of("nightly-unusual")) == 2
        alerts = get(manual, "/alerts", rule="nightly-unusual").json()["items"]
        assert [a["state"] for a in alerts] == ["resolved"]
    finally:
        manual.services.server_store.delete_alert_rule("nightly-unusual", source=None)


# -- suggestions ---------------------------------------------------------------------------
def test_suggestions_in_the_pinned_shape(manual: LiveServer) -> None:
    seed_shop(History(manual.services.store), start=time.time() - 55 * HOUR)
    r = get(manual, "/insights/suggestions", workflow="shop")
    assert r.status_code == 200, r.text
    found = {(s["step"], s["kind"]): s for s in r.json()["suggestions"]}
    assert ("fetch", "retries") in found
    slow = found[("slow", "timeout")]
    assert set(slow) == {"workflow", "step", "kind", "current", "suggested", "reason", "evidence"}
    assert (slow["workflow"], slow["current"], slow["suggested"]) == (
        "shop",
        None,
        {"timeout": "4m"},
    )
    assert found[("flaky", "retries")]["suggested"] == {"retries": 0}
    assert slow["evidence"]["samples"] == 40


# -- who sees what, and bad input ----------------------------------------------------------
@pytest.fixture(scope="module")
def viewer_b(manual: LiveServer) -> str:
    """A viewer of namespace team-b only."""
    create_user(manual.services, "vera", "viewer-password-123", role="viewer", namespace="team-b")
    return manual.login("vera", "viewer-password-123")


def test_a_viewer_sees_only_the_runs_of_their_namespaces(
    manual: LiveServer, nightly: dict[str, Any], viewer_b: str
) -> None:
    failures = get(manual, "/insights/failures", viewer_b, since="3d").json()
    assert [c["workflows"] for c in failures["clusters"]] == [["elsewhere"]]
    assert get(manual, "/insights/anomalies", viewer_b, since="3d").json() == {"anomalies": []}
    assert get(manual, "/insights/suggestions", viewer_b).json() == {"suggestions": []}
    refused = get(manual, "/insights/anomalies", viewer_b, namespace="team-a")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    with manual.anonymous() as anon:
        assert anon.get("/api/v1/insights/failures").status_code == 401


@pytest.mark.parametrize(
    ("path", "params", "word"),
    [
        ("/insights/failures", {"since": "last tuesday"}, "since"),
        ("/insights/anomalies", {"since": "7 parsecs"}, "since"),
        ("/insights/anomalies", {"limit": 0}, "limit"),
        ("/insights/failures", {"limit": 201}, "limit"),
        ("/insights/suggestions", {"workflow": "w" * 201}, "workflow"),
    ],
)
def test_bad_input_is_a_4xx_in_the_error_shape(
    manual: LiveServer, path: str, params: dict[str, Any], word: str
) -> None:
    r = get(manual, path, **params)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert word in (error["message"] + str(error["details"]))
    assert "Traceback" not in r.text


def test_the_openapi_document_describes_the_routes_and_the_flag(manual: LiveServer) -> None:
    with manual.anonymous() as anon:
        doc = anon.get("/api/v1/openapi.json").json()
    for path in ("failures", "anomalies", "suggestions"):
        assert f"/api/v1/insights/{path}" in doc["paths"]
    detail = doc["components"]["schemas"]["RunDetail"]["properties"]
    assert "anomaly" in detail
