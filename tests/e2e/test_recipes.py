"""The ready workflows of ``examples/`` (docs/recipes.md), each run for real in a sandbox.

Every test works in its own temporary directory: the work directory of the run, the
sample project copied there, local HTTP processes on 127.0.0.1 (the sample service,
the router, the key consumer, a webhook receiver) started from ``examples/recipes/apps``
and killed afterwards, local git repositories, a fresh PostgreSQL database. Workflows
run with the real ``plait run`` (or a real ``plait serve`` where the recipe needs the
server's secret store), and the tests check what changed in the sandbox, not only the
exit code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import EXAMPLES, ROOT

APPS = EXAMPLES / "recipes" / "apps"
SAMPLE = EXAMPLES / "recipes" / "sample-app"
RECIPES = [
    "ci-pipeline.yaml",
    "deploy-with-approval.yaml",
    "blue-green.yaml",
    "rolling-deploy.yaml",
    "canary.yaml",
    "db-migration.yaml",
    "backup-drill.yaml",
    "health-monitor.yaml",
    "release.yaml",
    "security-scan.yaml",
    "secret-rotation.yaml",
    "dev-setup.yaml",
]
PASSWORD = "correct-horse-battery-staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"process {proc.args!r} exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout}s")


class Sandbox:
    """A work directory, the environment of `plait`, and the processes to kill."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
        self.env.update(
            PLAIT_HOME=str(root / "home"),
            PLAIT_EXAMPLES=str(EXAMPLES),
            # `plait`, `python` and the tools of the project's venv come first
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            COLUMNS="120",
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str | Path, port: int, env: dict[str, str] | None = None) -> None:
        proc = subprocess.Popen(
            [sys.executable, *map(str, args), "--port", str(port)],
            cwd=self.work,
            env={**self.env, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        wait_port(port, proc)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def plait(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plait.cli", *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(self, recipe: str, *inputs: str, code: int = 0, timeout: float = 180) -> dict[str, Any]:
        """`plait run` a recipe with ``-i`` inputs; check the exit code; the result."""
        results = self.root / "results" / str(time.monotonic_ns())
        args = [x for i in inputs for x in ("-i", i)]
        done = self.plait(
            "run", str(EXAMPLES / recipe), *args, "--results-dir", str(results), timeout=timeout
        )
        assert done.returncode == code, done.stdout[-4000:] + done.stderr[-4000:]
        assert "Traceback" not in done.stderr, done.stderr
        (result,) = results.glob("workflow_*.json")
        doc: dict[str, Any] = json.loads(result.read_text())
        doc["log"] = done.stdout
        return doc


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc["steps"]}


# -- every recipe -------------------------------------------------------------------------
def test_every_recipe_validates_and_documents_its_inputs(box: Sandbox) -> None:
    done = box.plait("validate", *(str(EXAMPLES / r) for r in RECIPES))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": ok") == len(RECIPES)
    recipes_doc = (ROOT / "docs" / "recipes.md").read_text()
    for name in RECIPES:
        text = (EXAMPLES / name).read_text()
        header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        assert text.startswith("# "), f"{name}: no header comment"
        assert "Inputs:" in header, name
        assert "Connections:" in header, name
        for key in yaml.safe_load(text).get("inputs", {}):
            assert key in header, f"{name}: the header does not explain the input {key!r}"
        assert f"examples/{name}" in recipes_doc, f"docs/recipes.md does not explain {name}"


# -- CI -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_ci_pipeline_lints_tests_builds_and_gates_on_coverage(box: Sandbox) -> None:
    shutil.copytree(SAMPLE, box.work / "app")
    doc = box.run("ci-pipeline.yaml", "project=app", f"python={sys.executable}")
    assert doc["outputs"]["coverage"] == "100.0"
    wheel = box.work / "app" / doc["outputs"]["wheel"]
    assert wheel.name == "sample_app-0.3.1-py3-none-any.whl"
    import hashlib

    assert doc["outputs"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert (box.work / "app" / "reports" / "junit.xml").exists()

    # a change without tests: coverage drops below the threshold and the gate stops the run
    tests = box.work / "app" / "tests" / "test_pricing.py"
    text = tests.read_text().replace("from sample_app.pricing import format_cents\n", "")
    tests.write_text(text.split("def test_format")[0].rstrip() + "\n")
    shutil.rmtree(box.work / "app" / "dist")
    doc = box.run(
        "ci-pipeline.yaml", "project=app", f"python={sys.executable}", "min_coverage=95", code=1
    )
    state = statuses(doc)
    assert state["test"] == "succeeded"
    assert state["coverage_gate"] == "failed"
    assert state["build"] == "skipped"
    assert "coverage 90.9% is below the threshold of 95%" in doc["log"]
    assert not (box.work / "app" / "dist").exists()


# -- deployments --------------------------------------------------------------------------
def make_builds(work: Path, **builds: dict[str, Any]) -> None:
    """``builds/<version>/app.json`` for each version (``v1_2_0`` is 1.2.0) with its fields."""
    for key, fields in builds.items():
        folder = work / "builds" / key.removeprefix("v").replace("_", ".")
        folder.mkdir(parents=True)
        (folder / "app.json").write_text(json.dumps({"version": folder.name, **fields}))


def fleet(box: Sandbox, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLES / "recipes" / "bin" / "fleet.py"), *args],
        cwd=box.work,
        check=True,
        capture_output=True,
    )


def current(box: Sandbox, instance: str) -> str:
    return os.readlink(box.work / instance / "current").rsplit("/", 1)[-1]


def router_weights(box: Sandbox) -> dict[str, int]:
    data = json.loads((box.work / "router.json").read_text())
    return {b["name"]: b["weight"] for b in data["backends"]}


def start_fleet(box: Sandbox, names: list[str], live: dict[str, int]) -> dict[str, int]:
    """One sample-service process per name, each at 1.0.0, behind a router; the ports."""
    ports = {name: free_port() for name in [*names, "router"]}
    backends = [
        {"name": n, "url": f"http://127.0.0.1:{ports[n]}", "weight": live.get(n, 0)} for n in names
    ]
    (box.work / "router.json").write_text(json.dumps({"backends": backends}))
    for name in names:
        fleet(box, "activate", name, "1.0.0", "--builds", "builds")
        box.start(APPS / "webapp.py", "--root", name, port=ports[name])
    box.start(APPS / "router.py", "--config", "router.json", port=ports["router"])
    return ports


def test_deploy_waits_for_approval_in_production_and_rolls_back_a_sick_release(
    box: Sandbox,
) -> None:
    make_builds(
        box.work, v1_0_0={"healthy": True}, v1_1_0={"healthy": True}, v2_0_0={"healthy": False}
    )
    (box.work / "app" / "shared").mkdir(parents=True)
    (box.work / "app" / "shared" / "users.txt").write_text("ada\n")
    fleet(box, "activate", "app", "1.0.0", "--builds", "builds")
    port = free_port()
    box.start(APPS / "webapp.py", "--root", "app", port=port)
    health = f"health_url=http://127.0.0.1:{port}/health"

    # production: the run waits at the approval until someone approves it
    results = box.root / "approved"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plait.cli", "run", str(EXAMPLES / "deploy-with-approval.yaml"),
         "-i", "version=1.1.0", "-i", "environment=production", "-i", health,
         "--results-dir", str(results)],
        cwd=box.work, env=box.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]
        deadline = time.monotonic() + 60
        while True:
            shown = json.loads(box.plait("runs", "show", run_id, "--json").stdout)
            if statuses(shown).get("approve") == "waiting":
                break
            assert time.monotonic() < deadline, shown
            time.sleep(0.3)
        assert current(box, "app") == "1.0.0"  # nothing deployed before the decision
        approved = box.plait("approve", run_id, "approve", "--comment", "go")
        assert approved.returncode == 0, approved.stderr
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    assert current(box, "app") == "1.1.0"
    assert httpx.get(f"http://127.0.0.1:{port}/health").json()["version"] == "1.1.0"
    (backup,) = (box.work / "backups").glob("production-before-1.1.0-*.tar.gz")
    with tarfile.open(backup) as tar:
        assert "users.txt" in tar.getnames()

    # staging: no approval; 2.0.0 is unhealthy, so the release and the data go back
    doc = box.run("deploy-with-approval.yaml", "version=2.0.0", health, code=1)
    state = statuses(doc)
    assert state["approve"] == "skipped"
    assert state["deploy"] == "succeeded"
    assert state["health_after"] == "failed"
    assert state["rollback"] == state["restore_data"] == state["health_rolled_back"] == "succeeded"
    assert current(box, "app") == "1.1.0"
    assert httpx.get(f"http://127.0.0.1:{port}/health").json()["version"] == "1.1.0"
    assert (box.work / "app" / "shared" / "users.txt").read_text() == "ada\n"


def test_blue_green_switches_traffic_and_switches_back_on_failure(box: Sandbox) -> None:
    make_builds(
        box.work,
        v1_0_0={"healthy": True},
        v1_1_0={"healthy": True},
        v2_0_0={"healthy": True, "error_rate": 1.0},  # "healthy", yet every page fails
    )
    ports = start_fleet(box, ["blue", "green"], {"blue": 100})
    inputs = [f"{n}_url=http://127.0.0.1:{ports[n]}" for n in ("blue", "green", "router")]

    doc = box.run("blue-green.yaml", "version=1.1.0", *inputs)
    assert doc["outputs"] == {"live": "green", "previous": "blue"}
    assert router_weights(box) == {"blue": 0, "green": 100}
    assert (current(box, "blue"), current(box, "green")) == ("1.0.0", "1.1.0")
    assert httpx.get(f"http://127.0.0.1:{ports['router']}/").json()["version"] == "1.1.0"

    # 2.0.0 goes to blue, traffic switches, the smoke requests fail: traffic goes back
    doc = box.run("blue-green.yaml", "version=2.0.0", *inputs, code=1)
    state = statuses(doc)
    assert state["switch"] == "succeeded"
    assert state["smoke"] == "failed"
    assert state["switch_back"] == state["reset_idle"] == "succeeded"
    assert router_weights(box) == {"blue": 0, "green": 100}
    assert (current(box, "blue"), current(box, "green")) == ("1.0.0", "1.1.0")
    answer = httpx.get(f"http://127.0.0.1:{ports['router']}/")
    assert answer.status_code == 200
    assert answer.json()["version"] == "1.1.0"


def test_rolling_deploy_updates_one_at_a_time_and_rolls_all_back(box: Sandbox) -> None:
    make_builds(
        box.work, v1_0_0={"healthy": True}, v1_1_0={"healthy": True}, v2_0_0={"healthy": False}
    )
    names = ["web1", "web2", "web3"]
    ports = start_fleet(box, names, dict.fromkeys(names, 100))
    instances = json.dumps(
        [{"name": n, "dir": n, "url": f"http://127.0.0.1:{ports[n]}"} for n in names]
    )
    common = [f"instances={instances}", "drain_seconds=0.1", "health_timeout=5"]

    doc = box.run("rolling-deploy.yaml", "version=1.1.0", *common)
    assert [current(box, n) for n in names] == ["1.1.0"] * 3
    assert router_weights(box) == dict.fromkeys(names, 100)
    starts = [line for line in doc["log"].splitlines() if re.match(r"▶ update\[\d\] running", line)]
    assert starts == [f"▶ update[{i}] running" for i in range(3)]  # one after the other

    # web1 does not come up healthy: web2 and web3 are not touched, web1 goes back
    doc = box.run("rolling-deploy.yaml", "version=2.0.0", *common, code=1)
    assert "not updating web2: web1 failed first" in doc["log"]
    assert [current(box, n) for n in names] == ["1.1.0"] * 3
    assert router_weights(box) == dict.fromkeys(names, 100)
    assert statuses(doc)["rollback"] == "succeeded"


def test_canary_promotes_a_good_release_and_rolls_back_an_erring_one(box: Sandbox) -> None:
    make_builds(
        box.work,
        v1_0_0={"healthy": True},
        v1_1_0={"healthy": True},
        v2_0_0={"healthy": True, "error_rate": 0.5},
    )
    ports = start_fleet(box, ["stable", "canary"], {"stable": 100})
    inputs = [f"{n}_url=http://127.0.0.1:{ports[n]}" for n in ("stable", "canary", "router")]

    doc = box.run("canary.yaml", "version=1.1.0", *inputs)
    assert doc["outputs"] == {"error_rate_1": "0.000", "error_rate_2": "0.000"}
    assert "the canary answered 2 request(s), 0 with a 5xx" in doc["log"]  # 10% of 20
    assert "the canary answered 10 request(s), 0 with a 5xx" in doc["log"]  # 50% of 20
    assert (current(box, "stable"), current(box, "canary")) == ("1.1.0", "1.1.0")
    assert router_weights(box) == {"stable": 100, "canary": 0}

    doc = box.run("canary.yaml", "version=2.0.0", *inputs, code=1)
    state = statuses(doc)
    assert state["analyze_1"] == "failed"
    assert state["shift_2"] == state["promote"] == "skipped"
    assert state["rollback"] == "succeeded"
    assert router_weights(box) == {"stable": 100, "canary": 0}
    assert (current(box, "stable"), current(box, "canary")) == ("1.1.0", "1.1.0")


# -- database -----------------------------------------------------------------------------
@pytest.mark.postgres
def test_db_migration_applies_in_order_and_reverts_on_failure(box: Sandbox) -> None:
    import sqlalchemy as sa

    from tests.pg import fresh_database

    shutil.copytree(EXAMPLES / "recipes" / "migrations", box.work / "migrations")
    with fresh_database("plait_recipe") as url:
        plain = sa.make_url(url).set(drivername="postgresql").render_as_string(False)
        box.env["PLAIT_CONNECTION_APPDB"] = json.dumps({"type": "postgres", "url": plain})
        engine = sa.create_engine(url, poolclass=sa.NullPool)

        def versions() -> list[int]:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT version FROM schema_migrations ORDER BY 1")
                return [r[0] for r in rows]

        def tables() -> set[str]:
            return set(sa.inspect(engine).get_table_names())

        try:
            doc = box.run("db-migration.yaml", "target=2")
            assert doc["outputs"]["pending"] == ["create_users", "add_email"]
            assert versions() == [1, 2]
            doc = box.run("db-migration.yaml", "dry_run=true")
            assert doc["outputs"]["pending"] == ["create_orders"]
            assert versions() == [1, 2]

            # 0003 applies, 0004 fails half-way, 0005 must not run: all of it is undone
            (box.work / "migrations" / "0004_broken.sql").write_text(
                "-- migrate:up\nALTER TABLE orders ADD COLUMN note TEXT;\n"
                "ALTER TABLE no_such_table ADD COLUMN x INTEGER;\n"
                "-- migrate:down\nALTER TABLE orders DROP COLUMN note;\n"
            )
            (box.work / "migrations" / "0005_after.sql").write_text(
                "-- migrate:up\nCREATE TABLE after_broken (id INTEGER);\n"
                "-- migrate:down\nDROP TABLE after_broken;\n"
            )
            doc = box.run("db-migration.yaml", code=1)
            assert statuses(doc)["revert"] == "succeeded"
            assert "no_such_table" in doc["log"]
            assert "migration 4 is not applied: not running 5" in doc["log"]
            assert versions() == [1, 2]
            assert tables() == {"schema_migrations", "users"}

            (box.work / "migrations" / "0004_broken.sql").unlink()
            (box.work / "migrations" / "0005_after.sql").rename(
                box.work / "migrations" / "0004_after.sql"
            )
            box.run("db-migration.yaml")
            assert versions() == [1, 2, 3, 4]
            assert {"orders", "after_broken"} <= tables()
        finally:
            engine.dispose()


def test_backup_is_verified_and_a_restore_drill_proves_it(box: Sandbox) -> None:
    import sqlite3

    data = box.work / "data"
    (data / "uploads" / "2024").mkdir(parents=True)
    (data / "uploads" / "2024" / "invoice.pdf").write_bytes(os.urandom(2048))
    (data / "uploads" / "logo.svg").write_text("<svg/>")
    db = sqlite3.connect(data / "app.db")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO users (name) VALUES (?)", [("ada",), ("grace",), ("linus",)])
    db.commit()
    db.close()
    old = box.work / "backups" / "backup-20000101T000000Z.tar.gz"
    old.parent.mkdir()
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 40 * 86400,) * 2)

    doc = box.run("backup-drill.yaml")
    assert "same tables and row counts as live" in doc["log"]
    assert "same files as live" in doc["log"]
    assert doc["outputs"]["files"] == "3"
    archive = box.work / doc["outputs"]["archive"]
    checksum = (archive.parent / (archive.name + ".sha256")).read_text().split()
    assert checksum == [doc["outputs"]["sha256"], archive.name]
    assert not old.exists()  # older than keep_days: pruned
    assert not list(box.work.glob(".backup-*"))  # the scratch space is gone
    # restore it by hand, as an operator would
    with tarfile.open(archive) as tar:
        tar.extractall(box.root / "restored", filter="data")
    restored = sqlite3.connect(box.root / "restored" / "app.db")
    assert [r[0] for r in restored.execute("SELECT name FROM users ORDER BY id")] == [
        "ada",
        "grace",
        "linus",
    ]
    restored.close()
    assert (box.root / "restored" / "files" / "logo.svg").read_text() == "<svg/>"


# -- monitoring ---------------------------------------------------------------------------
HOOK = """
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(sys.argv[1], "ab") as f:
            f.write(body + b"\\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[3])), Hook).serve_forever()
"""


def test_health_monitor_alerts_a_channel_when_an_endpoint_is_down(box: Sandbox) -> None:
    make_builds(box.work, v1_0_0={"healthy": True})
    fleet(box, "activate", "app", "1.0.0", "--builds", "builds")
    app_port, hook_port = free_port(), free_port()
    box.start(APPS / "webapp.py", "--root", "app", port=app_port)
    (box.root / "hook.py").write_text(HOOK)
    received = box.root / "received.jsonl"
    box.start(box.root / "hook.py", str(received), port=hook_port)
    box.env["PLAIT_CHANNEL_OPS"] = f"http://127.0.0.1:{hook_port}/hook"
    up = f"http://127.0.0.1:{app_port}/health"
    down = f"http://127.0.0.1:{free_port()}/health"

    doc = box.run("health-monitor.yaml", f"endpoints={json.dumps([up])}", "timeout=2s")
    assert doc["outputs"] == {"up": "1", "down": "0"}
    assert statuses(doc)["alert"] == "skipped"
    assert not received.exists()

    doc = box.run("health-monitor.yaml", f"endpoints={json.dumps([up, down])}", code=1)
    assert doc["outputs"] == {"up": "1", "down": "1"}
    (alert,) = [json.loads(line) for line in received.read_text().splitlines()]
    assert alert["title"] == "1 endpoint(s) down"
    assert down in alert["text"]
    assert up not in alert["text"]
    assert alert["workflow"] == "health-monitor"


# -- release ------------------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@localhost",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@localhost"}  # fmt: skip
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def commit(repo: Path, message: str) -> None:
    with (repo / "log.txt").open("a") as f:
        f.write(message + "\n")
    git(repo, "add", "log.txt")
    git(repo, "commit", "-q", "-m", message)


def test_release_from_conventional_commits(box: Sandbox) -> None:
    origin, repo = box.root / "origin.git", box.work / "repo"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    git(repo, "remote", "add", "origin", str(origin))
    commit(repo, "feat: first feature")
    git(repo, "tag", "v1.0.0")
    commit(repo, "fix(api): handle an empty body")
    commit(repo, "docs: explain the API")
    git(repo, "push", "-q", "origin", "main", "v1.0.0")

    doc = box.run("release.yaml", "repo=repo")  # a fix alone: patch
    assert doc["outputs"]["version"] == "1.0.1"
    assert doc["outputs"]["bump"] == "patch"
    commit(repo, "feat(ui): dark mode")
    doc = box.run("release.yaml", "repo=repo", "push=true")  # a feature: minor
    assert (doc["outputs"]["bump"], doc["outputs"]["tag"]) == ("minor", "v1.1.0")
    assert git(origin, "tag", "--list").split() == ["v1.0.0", "v1.1.0"]
    assert git(origin, "log", "-1", "--format=%s", "main").strip() == "chore(release): v1.1.0"
    assert "dark mode (ui)" in git(repo, "tag", "-l", "-n20", "v1.1.0")

    changelog = (repo / "CHANGELOG.md").read_text()
    assert changelog.index("## 1.1.0") < changelog.index("## 1.0.1")
    section = changelog.split("## 1.0.1")[0]
    assert "### Features" in section
    assert "- dark mode (ui)" in section
    assert "handle an empty body" in changelog.split("## 1.0.1")[1]
    assert "explain the API" not in changelog  # docs: not in the notes

    doc = box.run("release.yaml", "repo=repo")  # nothing new: no release, no tag
    assert doc["outputs"]["bump"] == "none"
    assert statuses(doc)["tag"] == "skipped"
    commit(repo, "refactor!: drop the v0 API")
    commit(repo, "feat: new API\n\nBREAKING CHANGE: clients must use /v2")
    doc = box.run("release.yaml", "repo=repo")
    assert (doc["outputs"]["bump"], doc["outputs"]["version"]) == ("major", "2.0.0")
    assert "### Breaking changes" in (repo / "CHANGELOG.md").read_text()


# -- security -----------------------------------------------------------------------------
def test_security_scan_gate(box: Sandbox) -> None:
    pytest.importorskip("bandit", reason="the static analysis runs bandit (pip install bandit)")
    shutil.copytree(SAMPLE, box.work / "app")
    doc = box.run("security-scan.yaml", "project=app", f"python={sys.executable}")
    assert doc["outputs"] == {"high": "0", "medium": "0", "vulnerable": "0", "secrets": "0"}

    (box.work / "app" / "src" / "sample_app" / "shell.py").write_text(
        'import subprocess\n\nTOKEN = "AKIAABCDEFGHIJKLMNOP"\n\n\n'
        "def run(cmd: str) -> int:\n    return subprocess.call(cmd, shell=True)\n"
    )
    with (box.work / "app" / "requirements.txt").open("a") as f:
        f.write("requests==2.31.0\n")
    doc = box.run("security-scan.yaml", "project=app", f"python={sys.executable}", code=1)
    assert statuses(doc)["gate"] == "failed"
    assert doc["outputs"]["high"] == "1"
    assert doc["outputs"]["vulnerable"] == "1"
    assert doc["outputs"]["secrets"] == "1"
    assert "CVE-2024-35195" in doc["log"]
    report = json.loads((box.work / "app" / "reports" / "bandit.json").read_text())
    assert {r["test_id"] for r in report["results"]} >= {"B602"}


# -- developer environment ----------------------------------------------------------------
@pytest.mark.slow
def test_dev_setup_creates_the_venv_installs_and_verifies(box: Sandbox) -> None:
    project = box.work / "app"
    shutil.copytree(SAMPLE, project)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    # offline: the project's own wheel from a local folder stands in for an index
    wheels = box.root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(project)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (project / "requirements-offline.txt").write_text("sample-app==0.3.1\n")
    inputs = [
        "project=app",
        f"python={sys.executable}",
        "requirements=requirements-offline.txt",
        f"pip_args=--no-index --find-links {wheels}",
        "checks=" + json.dumps(["python -c 'import sample_app; print(sample_app.__version__)'"]),
        "hook=python -m pip check",
    ]
    doc = box.run("dev-setup.yaml", *inputs, timeout=300)
    assert doc["outputs"]["venv_created"] == "true"
    assert "0.3.1" in doc["log"]
    assert (project / ".venv" / "bin" / "python").exists()
    assert (project / ".env").read_text() == (project / ".env.example").read_text()
    hook = project / ".git" / "hooks" / "pre-commit"
    assert os.access(hook, os.X_OK)
    assert "pip check" in hook.read_text()

    (project / ".env").write_text("APP_ENV=mine\n")
    doc = box.run("dev-setup.yaml", *inputs, timeout=300)  # again: nothing is lost
    assert doc["outputs"]["venv_created"] == "false"
    assert (project / ".env").read_text() == "APP_ENV=mine\n"

    doc = box.run("dev-setup.yaml", "project=app", 'tools=["no-such-tool-xyz"]', code=1)
    assert "no-such-tool-xyz is not installed" in doc["log"]


# -- on a server: secret rotation, and every recipe deploys -------------------------------
class Serve:
    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        box.env.update(PLAIT_ADMIN_USER="admin", PLAIT_ADMIN_PASSWORD=PASSWORD)
        box.start("-m", "plait.cli", "serve", port=self.port)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "plait serve is not ready"
            time.sleep(0.2)
        r = httpx.post(
            f"{self.url}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        self.client = httpx.Client(
            base_url=self.url,
            timeout=30,
            headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        )

    def deploy(self, name: str) -> None:
        text = (EXAMPLES / name).read_text()
        r = self.client.post(
            "/api/v1/workflows", content=text, headers={"Content-Type": "application/yaml"}
        )
        assert r.status_code in (200, 201), f"{name}: {r.text}"

    def run(self, workflow: str, inputs: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        r = self.client.post(f"/api/v1/workflows/{workflow}/runs", json={"inputs": inputs})
        assert r.status_code in (200, 201, 202), r.text
        run_id = r.json()["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.client.get(f"/api/v1/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
                return run
            time.sleep(0.3)
        raise AssertionError(f"run {run_id} did not end")

    def put_secret(self, name: str, value: str) -> None:
        r = self.client.put(f"/api/v1/secrets/ops/{name}", json={"value": value})
        assert r.status_code in (200, 201, 204), r.text


def whoami(url: str, key: str) -> int:
    return httpx.get(f"{url}/whoami", headers={"Authorization": f"Bearer {key}"}).status_code


@pytest.mark.slow
def test_on_a_server_every_recipe_deploys_and_the_secret_rotates(box: Sandbox) -> None:
    serve = Serve(box)
    for name in RECIPES:
        serve.deploy(name)
    schedules = serve.client.get("/api/v1/workflows/health-monitor/schedules").json()
    (schedule,) = schedules["schedules"]
    assert schedule["cron"] == "*/15 * * * *"
    import datetime as dt

    next_fire = dt.datetime.fromisoformat(schedule["next_fire"])
    assert dt.timedelta(0) < next_fire - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=15)

    # the consumer accepts the current key; the rotation replaces it everywhere
    consumer_port = free_port()
    consumer = f"http://127.0.0.1:{consumer_port}"
    admin_token = "consumer-admin-" + os.urandom(8).hex()
    box.start(
        APPS / "consumer.py", "--keys", str(box.root / "keys.json"),
        port=consumer_port, env={"CONSUMER_ADMIN_TOKEN": admin_token},
    )  # fmt: skip
    old_key = "old-key-" + os.urandom(12).hex()
    admin = {"Authorization": f"Bearer {admin_token}"}
    assert httpx.post(f"{consumer}/admin/keys", content=old_key, headers=admin).status_code == 201
    r = serve.client.post("/api/v1/tokens", json={"name": "rotation", "scopes": ["secrets:write"]})
    assert r.status_code == 201, r.text
    serve.put_secret("api_key", old_key)
    serve.put_secret("consumer_admin_token", admin_token)
    serve.put_secret("plait_token", r.json()["token"])
    inputs = {"consumer_url": consumer, "plait_url": serve.url}

    run = serve.run("secret-rotation", inputs)
    assert run["status"] == "succeeded", run
    assert whoami(consumer, old_key) == 401
    keys = httpx.get(f"{consumer}/admin/keys", headers=admin).json()["keys"]
    assert keys == [run["outputs"]["new_fingerprint"]]
    logs = serve.client.get(f"/api/v1/runs/{run['id']}/logs").text
    assert old_key not in logs
    assert admin_token not in logs
    assert "the old key is refused (401)" in logs

    # a second rotation starts from the key the first one stored, and revokes it
    again = serve.run("secret-rotation", inputs)
    assert again["status"] == "succeeded", again
    assert again["outputs"]["old_fingerprint"] == run["outputs"]["new_fingerprint"]
    keys = httpx.get(f"{consumer}/admin/keys", headers=admin).json()["keys"]
    assert keys == [again["outputs"]["new_fingerprint"]]

    # the consumer refuses the new key: nothing is stored and the current key still works
    r = serve.client.get("/api/v1/secrets/ops/api_key")
    before = r.json()["updated_at"]
    failing = serve.run("secret-rotation", {**inputs, "consumer_url": f"{consumer}/nowhere"})
    assert failing["status"] == "failed"
    assert serve.client.get("/api/v1/secrets/ops/api_key").json()["updated_at"] == before
    keys = httpx.get(f"{consumer}/admin/keys", headers=admin).json()["keys"]
    assert keys == [again["outputs"]["new_fingerprint"]]
