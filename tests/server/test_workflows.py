"""Workflows over real HTTP: deploy (YAML and JSON), 422 with every position, versions,
diff, rollback, runs pinned to their version, listing, name conflicts, permissions and
schedules synced on deploy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plait.server.bootstrap import create_user

from .conftest import LiveServer

YAML = "application/yaml"


def workflow(
    name: str = "build", *, namespace: str = "default", echo: str = "hi", extra: str = ""
) -> str:
    return (
        f"name: {name}\n"
        f"namespace: {namespace}\n"
        "description: Build the thing\n"
        "labels: {stage: production, service: api}\n"
        "inputs:\n"
        "  who: {type: string, default: world}\n"
        f"{extra}"
        "steps:\n"
        f"  - id: hello\n    run: echo {echo}\n"
    )


def test_deploy_yaml_then_unchanged_then_json(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/v1/workflows", content=workflow(), headers={"Content-Type": YAML})
        assert r.status_code == 201, r.text
        assert r.json() == {
            "name": "build",
            "namespace": "default",
            "version": 1,
            "checksum": r.json()["checksum"],
            "created": True,
        }
        again = c.post("/api/v1/workflows", content=workflow(), headers={"Content-Type": YAML})
        assert again.status_code == 200
        assert again.json()["version"] == 1
        assert again.json()["created"] is False
        v2 = c.post("/api/v1/workflows", json={"source": workflow(echo="there")})
        assert v2.status_code == 201
        assert v2.json()["version"] == 2
        detail = c.get("/api/v1/workflows/build").json()
        assert detail["version"] == 2
        assert "echo there" in detail["source"]
        assert detail["labels"] == {"service": "api", "stage": "production"}
        assert detail["inputs"][0]["name"] == "who"
        assert detail["steps"] == 1
        assert detail["author"] == "admin"
        versions = c.get("/api/v1/workflows/build/versions").json()
        assert [(v["version"], v["current"], v["author"]) for v in versions] == [
            (2, True, "admin"),
            (1, False, "admin"),
        ]


def test_invalid_workflow_lists_every_problem(sqlite_server: LiveServer) -> None:
    bad = (
        "name: Bad Name\n"
        "steps:\n"
        "  - id: a\n    run: echo 1\n    timeout: forever\n"
        "  - id: b\n    needs: [nope]\n    run: echo 2\n"
    )
    with sqlite_server.client() as c:
        r = c.post("/api/v1/workflows", content=bad, headers={"Content-Type": "text/yaml"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_workflow"
    details = error["details"]
    assert len(details) >= 2
    assert all(d["line"] > 0 and d["col"] > 0 for d in details)
    assert {d["line"] for d in details} >= {1, 5}
    assert all(d["text"].startswith(f"{d['line']}:{d['col']}: ") for d in details)


def test_bad_bodies_are_clear_4xx(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        assert c.post("/api/v1/workflows", json={"text": "x"}).status_code == 422
        r = c.post("/api/v1/workflows", content=b"x", headers={"Content-Type": "image/png"})
        assert r.status_code == 415
        r = c.post("/api/v1/workflows", content=b"\xff\xfe", headers={"Content-Type": YAML})
        assert r.status_code == 400
        assert c.get("/api/v1/workflows/nope").status_code == 404


def test_versions_diff_rollback_and_pinned_runs(server: LiveServer) -> None:
    with server.client() as c:
        for echo in ("one", "two"):
            r = c.post(
                "/api/v1/workflows", content=workflow(echo=echo), headers={"Content-Type": YAML}
            )
            assert r.status_code == 201
        services = server.services
        v2 = services.server_store.current_version("build")
        run = services.runs.start(v2, {})
        diff = c.get("/api/v1/workflows/build/diff", params={"from": 1, "to": 2})
        assert diff.status_code == 200
        assert "-    run: echo one\n" in diff.text
        assert "+    run: echo two\n" in diff.text
        assert diff.text.startswith("--- build@v1\n+++ build@v2\n")
        assert c.get("/api/v1/workflows/build/diff").text == diff.text  # default: v1..v2
        source = c.get("/api/v1/workflows/build/versions/1").json()
        assert "echo one" in source["source"]
        assert source["current"] is False
        assert c.get("/api/v1/workflows/build/versions/9").status_code == 404
        back = c.post("/api/v1/workflows/build/rollback", json={"version": 1})
        assert back.status_code == 200
        assert back.json()["version"] == 1
        assert c.get("/api/v1/workflows/build").json()["version"] == 1
        assert len(c.get("/api/v1/workflows/build/versions").json()) == 2
        assert c.post("/api/v1/workflows/build/rollback", json={"version": 7}).status_code == 404
    # the run started on v2 stays on v2; a new run starts on v1
    assert services.store.load_run(run.id).run.version_id == v2.id
    assert services.server_store.current_version("build").version == 1


def test_list_filters_and_pages(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        for i in range(25):
            stage = "production" if i % 5 == 0 else "staging"
            text = workflow(f"wf-{i:02d}", namespace="ops" if i % 2 else "dev").replace(
                "stage: production", f"stage: {stage}"
            )
            assert c.post("/api/v1/workflows", json={"source": text}).status_code == 201
        names: list[str] = []
        cursor = None
        while True:
            params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
            page = c.get("/api/v1/workflows", params=params).json()
            names += [w["name"] for w in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert names == [f"wf-{i:02d}" for i in range(25)]
        prod = c.get("/api/v1/workflows", params={"label": "stage:production"}).json()
        assert [w["name"] for w in prod["items"]] == ["wf-00", "wf-05", "wf-10", "wf-15", "wf-20"]
        both = c.get(
            "/api/v1/workflows", params=[("label", "stage:production"), ("namespace", "ops")]
        ).json()
        assert [w["name"] for w in both["items"]] == ["wf-05", "wf-15"]
        found = c.get("/api/v1/workflows", params={"q": "WF-2"}).json()
        assert len(found["items"]) == 5
        assert c.get("/api/v1/workflows", params={"label": "nocolon"}).status_code == 400
        item = prod["items"][0]
        assert item["last_run"] is None
        assert item["next_fire"] is None


def test_name_conflict_across_namespaces(server: LiveServer) -> None:
    with server.client() as c:
        assert (
            c.post("/api/v1/workflows", json={"source": workflow(namespace="ci")}).status_code
            == 201
        )
        r = c.post("/api/v1/workflows", json={"source": workflow(namespace="ops")})
    assert r.status_code == 409
    assert "unique across namespaces" in r.json()["error"]["message"]


def test_roles_decide_who_deploys_and_who_sees(sqlite_server: LiveServer) -> None:
    services = sqlite_server.services
    create_user(services, "vera", "a-long-viewer-password", role="viewer")
    create_user(services, "eddie", "a-long-editor-password", role="editor", namespace="ops")
    viewer = sqlite_server.login("vera", "a-long-viewer-password")
    editor = sqlite_server.login("eddie", "a-long-editor-password")
    with sqlite_server.client(viewer) as c:
        r = c.post("/api/v1/workflows", json={"source": workflow()})
        assert r.status_code == 403
    with sqlite_server.client(editor) as c:
        assert c.post("/api/v1/workflows", json={"source": workflow()}).status_code == 403
        ops = workflow("deploy-api", namespace="ops")
        assert c.post("/api/v1/workflows", json={"source": ops}).status_code == 201
    with sqlite_server.client() as c:
        assert c.post("/api/v1/workflows", json={"source": workflow("hidden")}).status_code == 201
    with sqlite_server.client(editor) as c:
        listed = [w["name"] for w in c.get("/api/v1/workflows").json()["items"]]
        assert listed == ["deploy-api"]
        assert c.get("/api/v1/workflows/hidden").status_code == 404
    with sqlite_server.client(viewer) as c:
        assert (
            c.post("/api/v1/workflows/deploy-api/rollback", json={"version": 1}).status_code == 403
        )
        assert len(c.get("/api/v1/workflows").json()["items"]) == 2
    with sqlite_server.anonymous() as c:
        assert c.get("/api/v1/workflows").status_code == 401


SCHEDULED = "triggers:\n  - schedule: {cron: '0 2 * * *', timezone: Europe/Berlin}\n"


def test_schedules_are_synced_on_deploy_and_visible(server: LiveServer) -> None:
    with server.client() as c:
        r = c.post("/api/v1/workflows", json={"source": workflow(extra=SCHEDULED)})
        assert r.status_code == 201
        got = c.get("/api/v1/workflows/build/schedules").json()
        [schedule] = got["schedules"]
        assert (schedule["cron"], schedule["timezone"], schedule["version"]) == (
            "0 2 * * *",
            "Europe/Berlin",
            1,
        )
        assert schedule["next_fire"] is not None
        assert c.get("/api/v1/workflows/build").json()["next_fire"] == schedule["next_fire"]
        store = server.services.server_store
        store.record_fire(schedule["id"], f"{schedule['id']}@x", time.time() - 60, None, "missed")
        fires = c.get("/api/v1/workflows/build/schedules").json()["fires"]
        assert [f["status"] for f in fires] == ["missed"]
        # a redeploy without the schedule removes it; a bad cron is refused with 422
        assert c.post("/api/v1/workflows", json={"source": workflow()}).status_code == 201
        assert c.get("/api/v1/workflows/build/schedules").json()["schedules"] == []
        bad = workflow(extra="triggers:\n  - schedule: {cron: '0 0 2 * * *'}\n")
        r = c.post("/api/v1/workflows", json={"source": bad})
        assert r.status_code == 422, r.text


def test_serve_deploy_refuses_what_the_api_refuses(
    sqlite_server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plait serve --deploy` applies the same schedule check as POST /workflows."""
    from plait.cli_server import deploy_files
    from plait.errors import NotFound

    bad = tmp_path / "bad-cron.yaml"
    bad.write_text(
        "name: bad-cron\ntriggers:\n  - schedule: {cron: '0 0 * * * *'}\n"
        "steps:\n  - id: a\n    run: echo a\n"
    )
    deploy_files(sqlite_server.services, [bad])
    with pytest.raises(NotFound):
        sqlite_server.services.server_store.get_workflow("bad-cron")
    assert "bad-cron" in capsys.readouterr().err
