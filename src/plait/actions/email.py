"""Email over SMTP: the ``smtp`` connection type, and sending one message.

Used by ``notify`` channels of type ``email``. smtplib is synchronous, so a message is
sent in a worker thread; the standard library is enough here (STARTTLS, implicit TLS,
AUTH) and keeps this integration free of another dependency. smtplib and ssl are
imported only when something is sent or tested.

TLS is the default (STARTTLS on port 587, or implicit TLS on 465 with ``ssl: true``),
certificates are verified (``ca_file`` names a private CA), and a password is never
sent over a connection that is not encrypted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, model_validator

from plait.actions.connections import ConnectionConfig, ConnectionType
from plait.errors import PlaitError

if TYPE_CHECKING:
    import smtplib
    import ssl
    from email.message import EmailMessage


class SmtpError(PlaitError):
    """The SMTP server could not be reached, refused us, or refused the message.
    ``retryable`` is False when trying again cannot help (a setting, a refused login)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class SmtpConfig(ConnectionConfig):
    host: str = Field(description="The SMTP server.")
    port: int | None = Field(
        None, description="Default 465 with ssl, 587 with starttls, else 25.", ge=1, le=65535
    )
    username: str | None = Field(None, description="For AUTH; none: send without logging in.")
    password: SecretStr | None = None
    starttls: bool | None = Field(
        None, description="Upgrade to TLS with STARTTLS (the default unless ssl is set)."
    )
    ssl: bool = Field(False, description="Implicit TLS from the first byte (port 465).")
    from_addr: str | None = Field(None, description="The sender; default the username.")
    timeout: float = Field(30.0, gt=0, description="Seconds allowed for each network step.")
    verify: bool = Field(True, description="Verify the server's TLS certificate.")
    ca_file: str | None = Field(None, description="A CA bundle to verify the server with.")

    @model_validator(mode="after")
    def _tls(self) -> SmtpConfig:
        if self.ssl and self.starttls:
            raise ValueError("give ssl (implicit TLS) or starttls, not both")
        return self

    @property
    def uses_starttls(self) -> bool:
        return not self.ssl if self.starttls is None else self.starttls

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 465 if self.ssl else 587 if self.uses_starttls else 25

    @property
    def sender(self) -> str:
        sender = self.from_addr or (self.username if "@" in (self.username or "") else None)
        if not sender:
            raise SmtpError(
                f"smtp {self.host}: no from_addr (and the username is no address)",
                retryable=False,
            )
        return sender


class SmtpConnection(ConnectionType):
    name = "smtp"
    description = "An SMTP server (STARTTLS or implicit TLS, AUTH) for email notifications."
    Config = SmtpConfig

    async def test(self, config: SmtpConfig) -> str:
        """EHLO, STARTTLS, login and NOOP: everything sending needs but a message."""
        return await asyncio.to_thread(_probe, config)


def build_message(
    *, sender: str, to: Sequence[str], cc: Sequence[str] = (), subject: str, body: str
) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = " ".join(subject.split())  # a header is one line
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(body)
    return message


async def send_message(config: SmtpConfig, message: EmailMessage) -> list[str]:
    """Send ``message`` to its To and Cc; returns the recipients the server accepted
    (SmtpError when it accepted none, or refused us before that)."""
    return await asyncio.to_thread(_send, config, message)


def _send(config: SmtpConfig, message: EmailMessage) -> list[str]:
    import smtplib

    recipients = [a.strip() for h in ("To", "Cc") for a in (message.get(h) or "").split(",")]
    recipients = [a for a in recipients if a]
    with _session(config) as smtp:
        try:
            refused = smtp.send_message(message, from_addr=config.sender, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            text = f"{_where(config)}: every recipient was refused: {exc.recipients}"
            raise SmtpError(text, retryable=False) from exc
        except smtplib.SMTPException as exc:
            raise SmtpError(f"{_where(config)}: the message was refused: {exc}") from exc
    return [r for r in recipients if r not in refused]


def _probe(config: SmtpConfig) -> str:
    with _session(config) as smtp:
        code, _ = smtp.noop()
        tls = "implicit TLS" if config.ssl else "STARTTLS" if config.uses_starttls else "no TLS"
        who = f", logged in as {config.username}" if config.username else ""
        return f"{_where(config)}: {tls}{who}, NOOP {code}"


@contextmanager
def _session(config: SmtpConfig) -> Iterator[smtplib.SMTP]:
    """A connected, encrypted (as configured) and logged-in session; every failure
    becomes an SmtpError that says which step failed."""
    import smtplib
    import ssl

    where = _where(config)
    step = "connect"
    try:
        smtp: smtplib.SMTP
        if config.ssl:
            smtp = smtplib.SMTP_SSL(
                config.host, config.effective_port, timeout=config.timeout, context=_tls(config)
            )
        else:
            smtp = smtplib.SMTP(config.host, config.effective_port, timeout=config.timeout)
        with smtp:
            step = "EHLO"
            smtp.ehlo()
            if config.uses_starttls:
                step = "STARTTLS"
                if not smtp.has_extn("starttls"):
                    raise SmtpError(
                        f"{where}: the server does not offer STARTTLS (set starttls: false "
                        "only for a server on a trusted network)",
                        retryable=False,
                    )
                smtp.starttls(context=_tls(config))
                smtp.ehlo()
            if config.username:
                step = "login"
                if not (config.ssl or config.uses_starttls):
                    raise SmtpError(
                        f"{where}: refusing to send the password without TLS", retryable=False
                    )
                password = config.password.get_secret_value() if config.password else ""
                smtp.login(config.username, password)
            step = "send"
            yield smtp
    except SmtpError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        text = f"{where}: authentication failed: {_smtp_text(exc)}"
        raise SmtpError(text, retryable=False) from exc
    except smtplib.SMTPException as exc:
        raise SmtpError(f"{where}: {step} failed: {exc}") from exc
    except ssl.SSLError as exc:
        detail = getattr(exc, "verify_message", None) or exc.reason or exc
        raise SmtpError(f"{where}: TLS failed: {detail}", retryable=False) from exc
    except TimeoutError as exc:
        raise SmtpError(f"{where}: timed out after {config.timeout:g}s ({step})") from exc
    except OSError as exc:
        raise SmtpError(f"{where}: {step} failed: {exc.strerror or exc}") from exc


def _tls(config: SmtpConfig) -> ssl.SSLContext:
    import ssl

    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _where(config: SmtpConfig) -> str:
    return f"smtp {config.host}:{config.effective_port}"


def _smtp_text(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {text}"
