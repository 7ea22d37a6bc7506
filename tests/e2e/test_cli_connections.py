"""``plait connections …`` and ``plait actions …`` as subprocesses: on the local home
store, on a live server, and the example plugin package installed by ``make setup``."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from tests.server.conftest import LiveServer

from .conftest import ROOT, Plait

KEY = "k3y-0f-the-greeter-4711-zz"
PLUGIN_WORKFLOW = ROOT / "examples" / "plugins" / "plait-example" / "workflows" / "greet.yaml"
GREET = """\
name: signed
steps:
  - id: greet
    uses: example.greet
    with: {name: Ada, connection: greeter}
  - id: echo
    needs: [greet]
    run: echo "key was $(cat KEYFILE)"
"""


def test_actions_list_and_show_include_the_plugin(plait: Plait) -> None:
    listed = plait("actions", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("example.greet"))
    assert "plait-example 0.1.0" in line
    assert "1.0" in line
    assert "shell" in listed.stdout
    items = json.loads(plait("actions", "list", "--json").stdout)["items"]
    greet = next(a for a in items if a["name"] == "example.greet")
    assert greet["input_schema"]["required"] == ["name"]

    shown = plait("actions", "show", "example.greet")
    assert shown.returncode == 0, shown.stderr
    assert "name: string (required) — Who to greet." in shown.stdout
    assert 'punctuation: one of "!", ".", "?" (default "!")' in shown.stdout
    assert "signature:" in shown.stdout  # an output
    assert json.loads(plait("actions", "show", "example.greet", "--json").stdout) == greet

    unknown = plait("actions", "show", "example.gret")
    assert unknown.returncode == 2
    assert "did you mean 'example.greet'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_a_workflow_using_the_plugin_runs(plait: Plait, tmp_path: Path) -> None:
    done = plait(
        "run", str(PLUGIN_WORKFLOW), "-i", "name=Ada", "--json", "--results-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["success"] is True
    assert result["outputs"] == {"greeting": "Hello, Ada!"}
    assert result["steps"][0]["outputs"] == {
        "greeting": "Hello, Ada!",
        "length": 11,
        "signature": None,
    }


def test_local_connections_lifecycle_and_a_run_that_uses_one(
    plait: Plait, plait_env: dict[str, str], tmp_path: Path
) -> None:
    made = plait(
        "connections", "set", "default", "greeter", "--type", "example",
        "--set", "greeting=Hi", "--secret", "signing_key", input=KEY + "\n",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "created connection default/greeter (example)"

    shown = plait("connections", "show", "default", "greeter")
    assert "greeting: Hi" in shown.stdout
    assert "signing_key: (set)" in shown.stdout
    listed = json.loads(plait("connections", "list", "--json").stdout)
    assert [(c["namespace"], c["name"], c["secrets"]) for c in listed] == [
        ("default", "greeter", {"signing_key": True})
    ]
    tested = plait("connections", "test", "default", "greeter")
    assert tested.returncode == 0, tested.stderr
    assert tested.stdout.strip() == "ok: greets with 'Hi', signed with HMAC-SHA256"

    flow, keyfile = tmp_path / "signed.yaml", tmp_path / "key.txt"
    keyfile.write_text(KEY)
    flow.write_text(GREET.replace("KEYFILE", str(keyfile)))
    ran = plait("run", str(flow), "--json", "--results-dir", str(tmp_path / "results"))
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    signature = hmac.new(KEY.encode(), b"Hi, Ada!", hashlib.sha256).hexdigest()
    assert result["steps"][0]["outputs"]["signature"] == signature
    assert KEY not in ran.stdout + ran.stderr
    run_id = result["run_id"]
    logs = plait("runs", "logs", run_id)
    assert "key was ***" in logs.stdout
    assert KEY not in logs.stdout

    # Replacing the public config without --secret keeps the stored key.
    again = plait("connections", "set", "default", "greeter", "--type", "example")
    assert again.stdout.strip() == "updated connection default/greeter (example)"
    assert "signing_key: (set)" in plait("connections", "show", "default", "greeter").stdout
    for path in Path(plait_env["PLAIT_HOME"]).glob("plait.db*"):
        assert KEY.encode() not in path.read_bytes()

    assert plait("connections", "delete", "default", "greeter").returncode == 0
    gone = plait("connections", "show", "default", "greeter")
    assert gone.returncode == 2
    assert "not found" in gone.stderr
    assert plait("connections", "delete", "default", "greeter").returncode == 2


def test_local_bad_input_and_a_failing_test(plait: Plait, tmp_path: Path) -> None:
    unknown = plait("connections", "set", "default", "x", "--type", "nope")
    assert unknown.returncode == 2
    assert "unknown connection type 'nope'" in unknown.stderr
    bad = plait("connections", "set", "default", "x", "--type", "example", "--set", "colour=red")
    assert bad.returncode == 2
    assert "colour: Extra inputs are not permitted" in bad.stderr
    assert plait("connections", "set", "Bad", "x", "--type", "example").returncode == 2
    assert plait("connections", "set", "default", "x").returncode == 2  # no type
    two = plait(
        "connections", "set", "default", "x", "--type", "example",
        "--secret", "signing_key", "--secret", "greeting", input="only-one-line\n",
    )  # fmt: skip
    assert two.returncode == 2
    assert "one value per line" in two.stderr
    plain = plait(
        "connections", "set", "default", "x", "--type", "example", "--set", "signing_key=abc"
    )
    assert plain.returncode == 0
    assert "prefer --secret signing_key" in plain.stderr

    spec = tmp_path / "greeter.yaml"
    spec.write_text("type: example\ngreeting: Yo\nsigning_key: Zk-too-brief\n")
    assert plait("connections", "set", "default", "weak", "--from-file", str(spec)).returncode == 0
    failed = plait("connections", "test", "default", "weak", "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout) == {
        "ok": False,
        "message": "the signing key is shorter than 16 characters",
    }
    types = plait("connections", "types", "--json")
    example = next(t for t in json.loads(types.stdout)["items"] if t["name"] == "example")
    assert example["secret_fields"] == ["signing_key"]
    assert "Traceback" not in unknown.stderr + bad.stderr + failed.stderr


def test_help_names_every_command(plait: Plait) -> None:
    top = plait("connections", "--help").stdout
    for command in ("set", "list", "show", "delete", "test", "types"):
        assert command in top
    assert "--secret" in plait("connections", "set", "--help").stdout
    assert "show" in plait("actions", "--help").stdout


def test_connections_on_a_server(live: LiveServer, plait: Plait, plait_env: dict[str, str]) -> None:
    plait_env["PLAIT_TOKEN"] = live.token
    server = ["--server", live.url]
    made = plait(
        "connections", "set", "ops", "greeter", "--type", "example", "--set", "greeting=Hi",
        "--secret", "signing_key", *server, input=KEY,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "created connection ops/greeter (example)"
    assert live.services.server_store.unsealed_connection("ops", "greeter").secrets == {
        "signing_key": KEY
    }
    shown = json.loads(plait("connections", "show", "ops", "greeter", "--json", *server).stdout)
    assert shown["secrets"] == {"signing_key": True}
    assert shown["config"] == {"greeting": "Hi"}
    listed = plait("connections", "list", *server)
    assert "ops/greeter" in listed.stdout
    assert KEY not in listed.stdout
    tested = plait("connections", "test", "ops", "greeter", *server)
    assert tested.returncode == 0
    assert tested.stdout.startswith("ok: greets with 'Hi'")
    bad = plait(
        "connections", "set", "ops", "greeter", "--type", "example", "--set", "x=1", *server
    )
    assert bad.returncode == 2
    assert "x: Extra inputs are not permitted" in bad.stderr
    types = plait("connections", "types", *server)
    assert "example" in types.stdout
    assert plait("connections", "delete", "ops", "greeter", *server).returncode == 0
    assert plait("connections", "show", "ops", "greeter", *server).returncode == 2
