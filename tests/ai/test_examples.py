"""The AI examples of ``examples/ai/``, each run end to end as a user runs them.

``plait run`` is the real command in a subprocess, started in the repository root so
the documented command lines work as written; the notifications and the issue tracker
are a real HTTP server on 127.0.0.1 that records what it receives. Invoice intake is
run on the shipped sample and on invoices built here (a large one that waits for a
manager's approval, given with ``plait approve`` from another process; one without an
IBAN). Ticket triage runs once through the command, and over every sample ticket in
this process, on one real SQLite store per run, with the offline model loaded once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from plait.local import LocalSession
from plait.model import load_workflow
from plait.model.inputs import validate_inputs
from plait.settings import Settings

from .fixtures import make

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "ai"
SAMPLES = EXAMPLES / "samples"
AI_EXAMPLES = ["invoice-intake.yaml", "ticket-triage.yaml"]


# -- a webhook receiver and issue tracker on 127.0.0.1 ----------------------------------------
@dataclass
class Receiver:
    url: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def on(self, path: str) -> list[dict[str, Any]]:
        return [body for where, body in self.received if where == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            found.append((self.path, body))
            if self.path.endswith("/issues"):
                answer = {"number": 17, "html_url": f"{base}/acme/app/issues/17"}
                self._answer(201, answer)
            else:
                self._answer(200, {"ok": True})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(base, found)
    finally:
        server.shutdown()
        server.server_close()


# -- the plait command ----------------------------------------------------------------------
def plait_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(PLAIT_HOME=str(home), COLUMNS="120", **extra)
    return env


def plait(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_example(
    env: dict[str, str], results: Path, name: str, *inputs: str, code: int = 0
) -> dict[str, Any]:
    args = [x for i in inputs for x in ("-i", i)]
    done = plait(env, "run", f"examples/ai/{name}", *args, "--results-dir", str(results))
    assert done.returncode == code, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr
    (result,) = results.glob("workflow_*.json")
    doc: dict[str, Any] = json.loads(result.read_text())
    return doc


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc["steps"]}


# -- both examples --------------------------------------------------------------------------
def test_examples_validate_and_explain_themselves(tmp_path: Path) -> None:
    done = plait(
        plait_env(tmp_path / "home"), "validate", *(f"examples/ai/{n}" for n in AI_EXAMPLES)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": ok") == len(AI_EXAMPLES)
    guide = (ROOT / "docs" / "ai.md").read_text()
    recipes = (ROOT / "docs" / "recipes.md").read_text()
    for name in AI_EXAMPLES:
        text = (EXAMPLES / name).read_text()
        header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        assert text.startswith("# "), name
        assert "Inputs:" in header, name
        assert "Connections:" in header, name
        for key in yaml.safe_load(text)["inputs"]:
            assert key in header, f"{name}: the header does not explain the input {key!r}"
        assert f"plait run examples/ai/{name}" in header, name
        assert f"examples/ai/{name}" in guide, f"docs/ai.md does not explain {name}"
        assert f"examples/ai/{name}" in recipes, f"docs/recipes.md does not list {name}"


# -- invoice intake -------------------------------------------------------------------------
def test_invoice_sample_is_approved_automatically_and_announced(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = plait_env(tmp_path / "home", PLAIT_CHANNEL_FINANCE=f"{receiver.url}/finance")
    doc = run_example(env, tmp_path / "out", "invoice-intake.yaml", "channel=finance")
    assert doc["outputs"]["decision"] == "auto_approve"
    assert doc["outputs"]["rule"] == "known-supplier-small-amount"
    assert doc["outputs"]["invoice"] == {
        "invoice_number": "INV-2026-0042",
        "invoice_date": "2026-03-12",
        "total": 318.92,
        "currency": "EUR",
        "supplier_email": "billing@acme-supplies.example",
        "iban": "DE89370400440532013000",
    }
    assert statuses(doc) == {
        "read": "succeeded",
        "fields": "succeeded",
        "route": "succeeded",
        "announce": "succeeded",
        "approve": "skipped",
    }
    (notice,) = receiver.on("/finance")
    assert notice["title"] == "Invoice INV-2026-0042: auto_approve"
    assert "billing@acme-supplies.example invoices EUR 318.92" in notice["text"]
    assert "(dated 2026-03-12)" in notice["text"]
    assert "because a known supplier, and under the limit of 1000" in notice["text"]
    assert notice["workflow"] == "invoice-intake"


def test_a_large_invoice_waits_for_a_manager(tmp_path: Path, receiver: Receiver) -> None:
    invoice = tmp_path / "big-invoice.pdf"
    invoice.write_bytes(make.invoice_pdf(number="INV-2026-0107", items=[("Laptops", 4, 1450.0)]))
    env = plait_env(tmp_path / "home", PLAIT_CHANNEL_FINANCE=f"{receiver.url}/finance")
    results = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plait.cli", "run", "examples/ai/invoice-intake.yaml",
         "-i", f"invoice={invoice}", "-i", "channel=finance", "--results-dir", str(results)],
        cwd=ROOT, env={**env, "PLAIT_DOC_DIRS": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]
        deadline = time.monotonic() + 90
        while True:
            shown = json.loads(plait(env, "runs", "show", run_id, "--json").stdout)
            if statuses(shown).get("approve") == "waiting":
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, shown
            time.sleep(0.3)
        (notice,) = receiver.on("/finance")  # the manager hears of it while the run waits
        assert notice["title"] == "Invoice INV-2026-0107: manager_approval"
        assert "EUR 6902.0" in notice["text"]  # 4 x 1,450.00 + 19 % VAT
        approved = plait(env, "approve", run_id, "approve", "--comment", "budgeted")
        assert approved.returncode == 0, approved.stderr
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err
    (result,) = results.glob("workflow_*.json")
    doc = json.loads(result.read_text())
    assert doc["outputs"]["decision"] == "manager_approval"
    assert doc["outputs"]["rule"] == "large-or-new-supplier"
    assert statuses(doc)["approve"] == "succeeded"


def test_an_invoice_without_an_iban_goes_to_finance(tmp_path: Path, receiver: Receiver) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "invoice.pdf").write_bytes(make.invoice_pdf(iban=None, email="sales@newco.example"))
    env = plait_env(tmp_path / "home", PLAIT_CHANNEL_FINANCE=f"{receiver.url}/finance")
    done = subprocess.run(
        [sys.executable, "-m", "plait.cli", "run", str(EXAMPLES / "invoice-intake.yaml"),
         "-i", "invoice=invoice.pdf", "-i", "channel=finance",
         "--results-dir", str(tmp_path / "out")],
        cwd=work, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = (tmp_path / "out").glob("workflow_*.json")
    doc = json.loads(result.read_text())
    assert doc["outputs"]["decision"] == "finance_review"
    assert doc["outputs"]["missing"] == ["iban"]
    assert doc["outputs"]["reason"] == "fields not found on the invoice: iban"
    assert statuses(doc)["approve"] == "skipped"
    (notice,) = receiver.on("/finance")
    assert notice["title"] == "Invoice INV-2026-0042: finance_review"
    assert "sales@newco.example invoices EUR 318.92" in notice["text"]


def test_an_invoice_that_is_not_there_fails_clearly(tmp_path: Path) -> None:
    env = plait_env(tmp_path / "home")
    doc = run_example(
        env, tmp_path / "out", "invoice-intake.yaml", "invoice=inbox/missing.pdf", code=1
    )
    read = next(s for s in doc["steps"] if s["id"] == "read")
    assert read["error"] == "inbox/missing.pdf does not exist"
    assert statuses(doc)["fields"] == "skipped"


# -- ticket triage --------------------------------------------------------------------------
@pytest.mark.slow  # the command loads the offline model in its own process
def test_ticket_triage_through_the_command_opens_an_issue_for_an_incident(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = plait_env(tmp_path / "home", PLAIT_CHANNEL_ENGINEERING=f"{receiver.url}/eng")
    doc = run_example(
        env,
        tmp_path / "out",
        "ticket-triage.yaml",
        "ticket=examples/ai/samples/ticket-export-crash.txt",
        f"tracker_url={receiver.url}/repos/acme/app/issues",
    )
    assert doc["outputs"]["category"] == "technical"
    assert doc["outputs"]["route"] == "incident"
    assert doc["outputs"]["subject"] == "CSV export crashes since the update"
    assert statuses(doc)["open_issue"] == "succeeded"
    (issue,) = receiver.on("/repos/acme/app/issues")
    assert issue["title"] == "[technical] CSV export crashes since the update"
    assert issue["body"].startswith(doc["outputs"]["summary"])
    assert "Error 500: internal server error" in issue["body"]
    (notice,) = receiver.on("/eng")
    assert notice["title"] == "Incident for technical: CSV export crashes since the update"
    assert notice["text"].endswith(f"Issue: {receiver.url}/acme/app/issues/17")


async def run_triage(tmp_path: Path, ticket: str, receiver: Receiver) -> dict[str, Any]:
    """Run the example in this process (the offline model is loaded once per process)."""
    source = (EXAMPLES / "ticket-triage.yaml").read_text()
    home = tmp_path / ticket / "home"
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    try:
        plan = load_workflow(source, "ticket-triage.yaml", session.registry.input_models()).plan
        given = {
            "ticket": f"examples/ai/samples/{ticket}",
            "tracker_url": f"{receiver.url}/repos/acme/app/issues",
        }
        inputs = validate_inputs(plan, given)  # what `plait run` does: defaults filled in
        result = await session.run(plan, source, inputs, workdir=ROOT)
    finally:
        await session.close()
    assert result.success, [(s.id, s.error) for s in result.steps]
    return result.to_dict()


@pytest.mark.slow  # loads the offline model (once for the three tickets)
async def test_every_sample_ticket_reaches_its_team(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for team in ("billing", "engineering", "accounts", "support"):
        monkeypatch.setenv(f"PLAIT_CHANNEL_{team.upper()}", f"{receiver.url}/{team}")
    expected = {
        "ticket-billing.eml": ("billing", "request", "billing"),
        "ticket-account.eml": ("account", "request", "accounts"),
        "ticket-export-crash.txt": ("technical", "incident", "engineering"),
    }
    for ticket, (category, route, team) in expected.items():
        doc = await run_triage(tmp_path, ticket, receiver)
        assert (doc["outputs"]["category"], doc["outputs"]["route"]) == (category, route), ticket
        opened = statuses(doc)["open_issue"] == "succeeded"
        assert opened is (route == "incident"), ticket
        notices = receiver.on(f"/{team}")
        assert len(notices) == 1, (ticket, receiver.received)
        assert notices[0]["text"].startswith(doc["outputs"]["summary"])
        assert ("Issue: " in notices[0]["text"]) is opened
    billing = receiver.on("/billing")[0]
    assert billing["title"] == "Request for billing: Charged twice for invoice INV-88"
    assert "refund the duplicate payment" in billing["text"]
    account = receiver.on("/accounts")[0]
    assert account["title"] == "Request for account: Change the owner of our account"
    assert len(receiver.on("/repos/acme/app/issues")) == 1
    assert receiver.on("/support") == []
