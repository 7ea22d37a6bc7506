"""The worker registry over HTTP: ``GET /api/v1/workers``, the reason a queued step
gives when no live worker can take it (or its queue is long), and the queue and worker
gauges of ``/metrics``."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from plait import __version__
from plait.server.bootstrap import create_user
from plait.store.server import ServerStore

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, step_of, wait_for

PASSWORD = "a-long-and-unusual-passphrase"


def fake_worker(
    store: ServerStore,
    worker_id: str,
    queues: list[str],
    tags: dict[str, str] | None = None,
    *,
    age: float = 0.0,
    state: str = "running",
) -> None:
    """A registry row as a worker on another machine would write it (it claims nothing)."""
    now = time.time()
    store.register_worker(
        worker_id,
        host=worker_id.split(":")[0],
        pid=4242,
        queues=queues,
        tags=tags or {},
        concurrency=4,
        version="0.0.1",
        now=now - age - 1,
    )
    store.worker_beat(worker_id, now - age, 1 if state == "running" else 0, state)


def workers(c: httpx.Client, **params: str) -> list[dict[str, Any]]:
    r = c.get("/api/v1/workers", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_workers_are_listed_with_state_heartbeat_routing_and_load(server: LiveServer) -> None:
    store = server.services.server_store
    fake_worker(store, "gone:1:aa", ["gpu"], {"gpu": "true"}, age=120)
    fake_worker(store, "done:2:bb", ["default"], age=3, state="stopped")
    fake_worker(store, "busy:3:cc", ["builds", "default"], {"region": "eu"})
    with server.client() as c:
        found = {w["id"]: w for w in workers(c)}
        assert list(found)[-1] == "done:2:bb"  # the stopped ones come last
        own = next(w for w in found.values() if w["pid"] == os.getpid())
        assert own["host"] == socket.gethostname()
        assert (own["state"], own["queues"], own["tags"]) == ("running", ["default"], {})
        assert (own["concurrency"], own["version"]) == (16, __version__)
        assert 0 <= own["heartbeat_age"] < 15
        assert own["stopped_at"] is None
        gone = found["gone:1:aa"]
        assert (gone["state"], gone["tags"], gone["queues"]) == ("lost", {"gpu": "true"}, ["gpu"])
        assert 119 < gone["heartbeat_age"] < 200
        done = found["done:2:bb"]
        assert done["state"] == "stopped"
        assert done["stopped_at"] is not None
        busy = found["busy:3:cc"]
        assert (busy["running"], busy["concurrency"], busy["load"]) == (1, 4, 0.25)
        assert [w["id"] for w in workers(c, state="lost")] == ["gone:1:aa"]
        assert c.get("/api/v1/workers", params={"state": "asleep"}).status_code == 422


def test_viewers_see_the_registry_and_strangers_do_not(server: LiveServer) -> None:
    create_user(server.services, "vera", PASSWORD, role="viewer", namespace="ops")
    create_user(server.services, "nemo", PASSWORD)
    with server.client(server.login("vera", PASSWORD)) as c:
        assert len(workers(c)) == 1
    with server.client(server.login("nemo", PASSWORD)) as c:
        assert c.get("/api/v1/workers").status_code == 403
    with server.anonymous() as c:
        assert c.get("/api/v1/workers").status_code == 401


WAITS = """\
name: waits
steps:
  - {id: fine, run: "true", needs: []}
  - {id: nobody, run: "true", queue: nowhere, needs: []}
  - {id: gpu, run: "true", runs_on: {gpu: true}, needs: []}
  - {id: eu, run: "true", queue: builds, runs_on: {region: eu, arch: arm64}, needs: []}
"""


def reasons(c: httpx.Client, run_id: str) -> dict[str, str | None]:
    run = c.get(f"/api/v1/runs/{run_id}").json()
    return {s["id"]: s["reason"] for s in run["steps"] if s["status"] == "queued"}


def test_a_queued_step_says_which_worker_it_waits_for(server: LiveServer) -> None:
    fake_worker(server.services.server_store, "arm:1:aa", ["builds"], {"arch": "arm64"})
    deploy(server, WAITS)
    with server.client() as c:
        run_id = start(c, "waits").json()["id"]
        deadline = time.monotonic() + 20
        while step_of(c.get(f"/api/v1/runs/{run_id}").json(), "fine")["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert reasons(c, run_id) == {
            "nobody": "no worker serves queue 'nowhere'",
            "gpu": "no worker with tag gpu=true",
            "eu": "no worker with tag region=eu serves queue 'builds'",
        }
        # a worker with the tag shows up (here: only in the registry, so nothing runs)
        fake_worker(
            server.services.server_store, "eu:2:bb", ["nowhere", "builds"], {"region": "eu"}
        )
        deadline = time.monotonic() + 20
        while (now := reasons(c, run_id))["nobody"] != "waiting for a free worker":
            assert time.monotonic() < deadline, now
            time.sleep(0.2)
        # each tag is on some worker of the queue, but not both on one: both are named
        assert now["eu"] == "no worker with tags arch=arm64, region=eu serves queue 'builds'"
        assert c.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        wait_for(c, run_id, ENDED)


def test_a_long_queue_names_its_backlog(sqlite_server: LiveServer) -> None:
    fake_worker(sqlite_server.services.server_store, "slow:1:aa", ["slow"])
    items = ", ".join(str(i) for i in range(150))
    deploy(
        sqlite_server,
        f"name: crowd\nsteps:\n  - {{id: each, run: 'true', queue: slow, for_each: [{items}]}}\n",
    )
    with sqlite_server.client() as c:
        run_id = start(c, "crowd").json()["id"]
        found = reasons(c, run_id)
    assert len(found) == 150
    assert set(found.values()) == {"waiting for a free worker: queue backlog 150"}
    with sqlite_server.client() as c:
        assert c.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_show_each_queue_and_the_workers(sqlite_server: LiveServer) -> None:
    store = sqlite_server.services.server_store
    fake_worker(store, "gpu:1:aa", ["gpu"], {"gpu": "true"})
    fake_worker(store, "gone:2:bb", ["default"], age=90)
    fake_worker(store, "done:3:cc", ["default"], state="stopped")
    deploy(sqlite_server, "name: waiting\nsteps:\n  - {id: a, run: 'true', queue: nowhere}\n")
    with sqlite_server.client() as c:
        run_id = start(c, "waiting").json()["id"]
        time.sleep(1.2)
        got = samples(c.get("/metrics").text)
        assert c.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    assert got[("plait_queue_depth", (("queue", "nowhere"),))] == 1
    assert got[("plait_queue_oldest_age_seconds", (("queue", "nowhere"),))] >= 1
    assert got[("plait_queue_depth", (("queue", "gpu"),))] == 0  # served, so listed
    assert got[("plait_queue_depth", (("queue", "default"),))] == 0
    states = {labels[0][1]: v for (name, labels), v in got.items() if name == "plait_workers"}
    assert states == {"running": 2, "draining": 0, "stopped": 1, "lost": 1}
    ages = {
        labels[0][1]: v
        for (name, labels), v in got.items()
        if name == "plait_worker_heartbeat_age_seconds"
    }
    own = [k for k in ages if k.split(":")[1] == str(os.getpid())]
    assert len(own) == 1
    assert set(ages) == {"gpu:1:aa", "gone:2:bb", *own}  # not the stopped one
    assert 89 < ages["gone:2:bb"] < 200
