"""Notifications on real peers: an SMTP server (aiosmtpd, STARTTLS or implicit TLS, AUTH,
a certificate made here) and an HTTP server receiving webhook and Slack posts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from plait.actions.base import ActionContext, ActionFailed
from plait.actions.connections import EnvConnections
from plait.actions.email import SmtpConfig, SmtpConnection, SmtpError
from plait.actions.notify import NotifyAction, NotifyInput
from plait.engine.machine import RunMachine
from plait.local import LocalSession
from plait.model import load_workflow
from plait.notify import ChannelError, load_channels, notify_run
from plait.settings import Settings

USER, PASSWORD = "mailer", "m4il-pa55"


# ------------------------------------------------------------------ servers


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    paths = Cert(folder / "cert.pem", folder / "key.pem")
    paths.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    messages: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    good = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=good, handled=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Smtp:
    port: int
    inbox: Inbox
    cert: Cert

    def config(self, **kw: Any) -> dict[str, Any]:
        base = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": USER,
            "password": PASSWORD,
            "from_addr": "plait@example.com",
            "ca_file": str(self.cert.cert),
            "timeout": 10,
        }
        return {**base, **kw}


def _server_tls(cert: Cert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert, cert.key)
    return context


@pytest.fixture
def smtp(cert: Cert) -> Iterator[Smtp]:
    """STARTTLS required, AUTH only after it."""
    inbox, port = Inbox(), _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_tls(cert),
        require_starttls=True,
        authenticator=_authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield Smtp(port, inbox, cert)
    finally:
        controller.stop()


@pytest.fixture
def smtps(cert: Cert) -> Iterator[Smtp]:
    """Implicit TLS from the first byte (what port 465 does)."""
    inbox, port = Inbox(), _free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        ssl_context=_server_tls(cert),
        server_hostname="localhost",
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield Smtp(port, inbox, cert)
    finally:
        controller.stop()


class Hooks:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200


@pytest.fixture
def hooks() -> Iterator[tuple[str, Hooks]]:
    state = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.received.append(json.loads(body))
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def make_ctx(connections: dict[str, dict[str, Any]] | None = None) -> ActionContext:
    environ = {
        f"PLAIT_CONNECTION_{k.upper()}": json.dumps(v) for k, v in (connections or {}).items()
    }
    source = EnvConnections(environ)
    return ActionContext(
        run_id="run-1",
        workflow="deploy",
        step="tell",
        attempt=1,
        workdir=Path("."),
        env={},
        log=lambda stream, line: None,
        mask=lambda text: text.replace("hunter22", "***"),
        connections=lambda name: source.get("default", name),
    )


async def notify(ctx: ActionContext, **kw: Any) -> dict[str, Any]:
    result = await NotifyAction().execute(ctx, NotifyInput.model_validate(kw))
    return result.outputs


# ------------------------------------------------------------------ the smtp connection


async def test_smtp_connection_test_does_starttls_login_and_noop(smtp: Smtp) -> None:
    said = await SmtpConnection().test(SmtpConfig.model_validate(smtp.config()))
    assert said == f"smtp 127.0.0.1:{smtp.port}: STARTTLS, logged in as {USER}, NOOP 250"


async def test_smtp_connection_test_names_what_failed(smtp: Smtp) -> None:
    bad = SmtpConfig.model_validate(smtp.config(password="wrong"))
    with pytest.raises(SmtpError, match=r"authentication failed: 535") as e:
        await SmtpConnection().test(bad)
    assert e.value.retryable is False
    untrusted = SmtpConfig.model_validate(smtp.config(ca_file=None))
    with pytest.raises(SmtpError, match=r"TLS failed: .*certificate"):
        await SmtpConnection().test(untrusted)
    clear = SmtpConfig.model_validate(smtp.config(starttls=False))
    with pytest.raises(SmtpError, match="refusing to send the password without TLS"):
        await SmtpConnection().test(clear)
    unverified = SmtpConfig.model_validate(smtp.config(ca_file=None, verify=False))
    assert "NOOP 250" in await SmtpConnection().test(unverified)
    with pytest.raises(SmtpError, match="connect failed: Connection refused"):
        await SmtpConnection().test(SmtpConfig.model_validate(smtp.config(port=_free_port())))


def test_smtp_config_defaults_and_checks() -> None:
    assert SmtpConfig(host="h").effective_port == 587
    assert SmtpConfig(host="h", ssl=True).effective_port == 465
    assert SmtpConfig(host="h", starttls=False).effective_port == 25
    with pytest.raises(ValueError, match=r"ssl .* or starttls, not both"):
        SmtpConfig(host="h", ssl=True, starttls=True)
    assert SmtpConnection.secret_fields() == ["password"]


# ------------------------------------------------------------------ email


async def test_notify_sends_email_through_an_smtp_connection(smtp: Smtp) -> None:
    ctx = make_ctx({"mail": {"type": "smtp", **smtp.config()}})
    out = await notify(
        ctx,
        connection="mail",
        to=["ops@example.com", "dev@example.com"],
        cc=["lead@example.com"],
        title="Deploy 1.2 done",
        message="Deployed 1.2 with password hunter22.",
        link="https://plait.example.com/runs/run-1",
    )
    assert out == {
        "channel": "mail",
        "type": "email",
        "status": None,
        "recipients": ["ops@example.com", "dev@example.com", "lead@example.com"],
    }
    [got] = smtp.inbox.messages
    assert got.sender == "plait@example.com"
    assert got.recipients == ["ops@example.com", "dev@example.com", "lead@example.com"]
    message = got.message
    assert message["From"] == "plait@example.com"
    assert message["To"] == "ops@example.com, dev@example.com"
    assert message["Cc"] == "lead@example.com"
    assert message["Subject"] == "Deploy 1.2 done"
    assert message["Message-ID"].endswith("@example.com>")
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("Deployed 1.2 with password ***.\n")  # the run's secrets masked
    assert "Workflow: deploy\nRun: run-1\nStep: tell\n" in body
    assert "Open the run: https://plait.example.com/runs/run-1" in body


async def test_an_email_channel_with_inline_implicit_tls(
    smtps: Smtp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = smtps.config(ssl=True)
    channels = {"oncall": {"type": "email", "smtp": settings, "to": "oncall@example.com"}}
    (tmp_path / "channels.yaml").write_text(json.dumps(channels))
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    out = await notify(make_ctx(), channel="oncall", message="disk almost full")
    assert out["recipients"] == ["oncall@example.com"]
    [got] = smtps.inbox.messages
    assert got.message["Subject"] == "disk almost full"  # no title: the first line
    # A step may send the same channel to other people.
    await notify(make_ctx(), channel="oncall", message="x", to=["boss@example.com"])
    assert smtps.inbox.messages[1].recipients == ["boss@example.com"]


async def test_email_failures_fail_the_step_clearly(smtp: Smtp) -> None:
    ctx = make_ctx(
        {
            "mail": {"type": "smtp", **smtp.config(password="hunter22")},
            "web": {"type": "sqlite", "path": "x.db"},
        }
    )
    with pytest.raises(ActionFailed, match=r"channel 'mail': smtp .*authentication failed") as e:
        await notify(ctx, connection="mail", to=["a@example.com"], message="m")
    assert e.value.retryable is False
    assert "hunter22" not in str(e.value)
    with pytest.raises(ActionFailed, match="no connection named 'nope'"):
        await notify(ctx, connection="nope", to=["a@example.com"], message="m")


def test_channel_files_are_checked(tmp_path: Path) -> None:
    def load(spec: Any) -> None:
        (tmp_path / "channels.yaml").write_text(json.dumps({"c": spec}))
        load_channels(tmp_path, {})

    with pytest.raises(ChannelError, match="channel 'c' needs at least one address in to"):
        load({"type": "email", "connection": "mail"})
    with pytest.raises(ChannelError, match=r"needs a connection .* or smtp"):
        load({"type": "email", "to": ["a@b.c"]})
    with pytest.raises(
        ChannelError, match=r"channel 'c': invalid smtp connection: host: Field required"
    ):
        load({"type": "email", "to": ["a@b.c"], "smtp": {"port": 25}})
    with pytest.raises(ChannelError, match="type must be one of webhook, slack, email"):
        load({"type": "pager", "url": "http://x"})
    env = {"PLAIT_CHANNEL_MAIL": '{"type": "email", "connection": "m", "to": ["a@b.c"]}'}
    assert load_channels(None, env)["mail"].email is not None
    with pytest.raises(ValueError, match="exactly one of channel, url or connection"):
        NotifyInput.model_validate({"message": "m", "channel": "a", "url": "http://x"})
    with pytest.raises(ValueError, match="needs `to`"):
        NotifyInput.model_validate({"message": "m", "connection": "mail"})


# ------------------------------------------------------------------ webhooks and Slack


async def test_slack_channels_get_text_and_blocks(
    hooks: tuple[str, Hooks], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = hooks
    monkeypatch.setenv("PLAIT_PUBLIC_URL", "https://plait.example.com/")
    out = await notify(make_ctx(), url=url, type="slack", title="Deployed", message="*1.2* is out")
    assert (out["type"], out["status"]) == ("slack", 200)
    [posted] = state.received
    assert posted["text"] == "*1.2* is out"
    header, section, facts, actions = posted["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "Deployed"}}
    assert section["text"] == {"type": "mrkdwn", "text": "*1.2* is out"}
    assert [f["text"] for f in facts["fields"]] == [
        "*Workflow*\ndeploy",
        "*Run*\nrun-1",
        "*Step*\ntell",
    ]
    [button] = actions["elements"]
    assert button["url"] == "https://plait.example.com/runs/run-1"


async def test_webhook_channels_get_the_notice_as_json(hooks: tuple[str, Hooks]) -> None:
    url, state = hooks
    await notify(make_ctx(), url=url, message="hello", title="T")
    assert state.received == [
        {"text": "hello", "title": "T", "workflow": "deploy", "run_id": "run-1", "step": "tell"}
    ]
    state.status = 404
    with pytest.raises(ActionFailed, match="answered 404") as e:
        await notify(make_ctx(), url=url, message="hello")
    assert e.value.retryable is False


# ------------------------------------------------------------------ a workflow's notify:


async def test_workflow_notify_renders_the_run_context_for_every_channel(
    tmp_path: Path, smtp: Smtp, hooks: tuple[str, Hooks], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code the server's trigger service runs when a run ends, on a real run."""
    url, state = hooks
    monkeypatch.setenv("PLAIT_PUBLIC_URL", "https://plait.example.com")
    monkeypatch.setenv("PLAIT_SECRET_TOKEN", "hunter22-secret")
    source = """
name: nightly
inputs: {env: {type: string, default: staging}}
steps:
  - id: build
    run: echo built
  - id: migrate
    run: exit 3
notify:
  - on: [failed]
    channel: team
    message: >-
      ${{ run.workflow }} on ${{ inputs.env }} ${{ run.status }}:
      ${{ run.failed_steps | join(', ') }} (token ${{ secrets.TOKEN }})
  - {on: [failed], channel: mail}
  - {on: [succeeded], channel: team}
  - {on: [failed], channel: missing}
"""
    home = tmp_path / "home"
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
    try:
        result = await session.run(plan, source, {"env": "staging"}, workdir=tmp_path)
        snap = session.store.load_run(result.run_id)
    finally:
        await session.close()
    assert result.status == "failed"
    secrets = {"TOKEN": "hunter22-secret"}
    machine = RunMachine(plan, snap.run, snap.steps, secrets=secrets)
    environ = {"PLAIT_CHANNEL_TEAM": json.dumps({"type": "slack", "url": url})}
    environ["PLAIT_CHANNEL_MAIL"] = json.dumps(
        {"type": "email", "connection": "smtp", "to": ["ops@example.com"]}
    )
    connections = EnvConnections(
        {"PLAIT_CONNECTION_SMTP": json.dumps({"type": "smtp", **smtp.config()})}
    )
    problems = await notify_run(
        plan.notify,
        machine.run,
        machine.steps.values(),
        machine.run_scope(),
        load_channels(None, environ),
        mask=lambda text: text.replace("hunter22-secret", "***"),
        connection=lambda name: connections.get("default", name),
    )
    assert problems == ["notify[3]: channel 'missing' is not configured"]
    [posted] = state.received
    assert posted["text"] == "nightly on staging failed: migrate (token ***)"
    header = posted["blocks"][0]["text"]["text"]
    assert header == "nightly failed"
    fields = [f["text"] for f in posted["blocks"][2]["fields"]]
    assert "*Status*\nfailed" in fields
    assert "*Failed steps*\nmigrate" in fields
    assert (
        posted["blocks"][3]["elements"][0]["url"]
        == f"https://plait.example.com/runs/{result.run_id}"
    )
    [mail] = smtp.inbox.messages
    assert mail.message["Subject"] == "nightly failed"
    body = mail.message.get_content().replace("\r\n", "\n")
    assert body.startswith(f"nightly: run {result.run_id} failed\n")  # no message: the default
    assert "Status: failed\n" in body
    assert "Failed steps: migrate\n" in body
