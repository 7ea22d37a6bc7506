"""Message brokers — RabbitMQ, Redis, NATS and MQTT: their connection types, how a
client for each is opened, and what a client's error means.

Each connection type holds one credential, ``url`` (user and password live in it, as
every client of these brokers expects), beside a few plain options. The publish actions
(:mod:`plait.actions.publish`) and the broker triggers both use these connections, so
they open clients and explain failures the same way: an error names the broker's host
and port, never its URL (it holds the password), and says whether trying again can help.

Clients are imported only when one is opened: importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator

from plait.actions.base import ActionFailed
from plait.actions.connections import ConnectionConfig, ConnectionType
from plait.errors import PlaitError

T = TypeVar("T")


# -- connection types --------------------------------------------------------------------
class BrokerConfig(ConnectionConfig):
    """A broker URL (the credential) and how long to wait for it."""

    #: the URL schemes the type takes, and the port each implies
    schemes: ClassVar[dict[str, int]] = {}
    url: SecretStr = Field(description="The broker's URL, user and password included.")
    connect_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds to connect, and to wait for an acknowledgement."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: SecretStr) -> SecretStr:
        for server in value.get_secret_value().split(","):
            parts = urlsplit(server.strip())
            if parts.scheme not in cls.schemes:
                expected = " or ".join(f"{s}://" for s in cls.schemes)
                raise ValueError(f"url must start with {expected}")
            if not parts.hostname and parts.scheme != "unix":
                raise ValueError("url has no host")
        return value

    def where(self) -> str:
        """Host and port of the (first) server: what an error may name (no password)."""
        parts = urlsplit(self.url.get_secret_value().split(",")[0].strip())
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname}:{_port(parts, self.schemes.get(parts.scheme, 0))}"


class RabbitMqConfig(BrokerConfig):
    schemes = {"amqp": 5672, "amqps": 5671}


class RedisConfig(BrokerConfig):
    schemes = {"redis": 6379, "rediss": 6379, "unix": 0}


class NatsConfig(BrokerConfig):
    schemes = {"nats": 4222, "tls": 4222, "ws": 80, "wss": 443}


class MqttConfig(BrokerConfig):
    schemes = {"mqtt": 1883, "mqtts": 8883}
    tls: bool = Field(False, description="Use TLS (mqtts:// URLs always do).")
    ca_file: str | None = Field(None, description="CA bundle (PEM) to verify the broker.")

    @property
    def use_tls(self) -> bool:
        return self.tls or self.url.get_secret_value().startswith("mqtts://")

    @property
    def port(self) -> int:
        return _port(urlsplit(self.url.get_secret_value()), 8883 if self.use_tls else 1883)

    def where(self) -> str:
        return f"{urlsplit(self.url.get_secret_value()).hostname}:{self.port}"


def _port(parts: Any, default: int) -> int:
    try:
        return int(parts.port or default)
    except ValueError:  # a port that is not a number
        return default


class RabbitMqConnection(ConnectionType):
    name = "rabbitmq"
    description = "A RabbitMQ (AMQP 0-9-1) broker: amqp://user:password@host:5672/vhost"
    Config = RabbitMqConfig

    async def test(self, config: RabbitMqConfig) -> str:
        connection = await _guard("rabbitmq", config, amqp_connect(config, config.connect_timeout))
        try:
            props = connection.transport.connection.server_properties
            product = f"{props.get('product', 'AMQP broker')} {props.get('version', '')}".strip()
            vhost = unquote(urlsplit(config.url.get_secret_value()).path[1:]) or "/"
            return f"{product} at {config.where()} (vhost {vhost})"
        finally:
            await connection.close()


class RedisConnection(ConnectionType):
    name = "redis"
    description = "A Redis (or Valkey) server: redis://[:password@]host:6379/0"
    Config = RedisConfig

    async def test(self, config: RedisConfig) -> str:
        client = redis_client(config, config.connect_timeout)
        try:
            info = await _guard("redis", config, client.info("server"))
            return f"Redis {info.get('redis_version', '?')} at {config.where()}"
        finally:
            await client.aclose()


class NatsConnection(ConnectionType):
    name = "nats"
    description = "A NATS server or cluster: nats://[user:password@]host:4222"
    Config = NatsConfig

    async def test(self, config: NatsConfig) -> str:
        client = await _guard("nats", config, nats_connect(config, config.connect_timeout))
        try:
            info = getattr(client, "_server_info", None) or {}  # no public accessor
            jetstream = "JetStream enabled" if info.get("jetstream") else "no JetStream"
            return f"NATS {info.get('version', '?')} at {config.where()} ({jetstream})"
        finally:
            await client.close()


class MqttConnection(ConnectionType):
    name = "mqtt"
    description = "An MQTT broker: mqtt://[user:password@]host:1883 (mqtts:// for TLS)"
    Config = MqttConfig

    async def test(self, config: MqttConfig) -> str:
        """Connect, and ask a Mosquitto-like broker its version (``$SYS``) if it tells."""

        async def probe() -> str:
            async with mqtt_client(config, config.connect_timeout) as client:
                await client.subscribe("$SYS/broker/version")
                try:
                    async with asyncio.timeout(1.0):
                        async for message in client.messages:
                            return f"{as_text(message.payload)} at {config.where()}"
                except TimeoutError:
                    pass
            return f"MQTT broker at {config.where()}"

        return await _guard("mqtt", config, probe())


# -- helpers -------------------------------------------------------------------------------
def as_text(value: Any) -> str:
    """A payload or reply as text for an output (bytes decoded, leniently)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


async def _guard(kind: str, config: BrokerConfig, call: Awaitable[T]) -> T:
    """``call``, a failure turned into a PlaitError naming the broker: what a
    connection test reports."""
    try:
        return await call
    except Exception as exc:
        raise PlaitError(str(failure(kind, config, exc))) from None


# -- opening clients ---------------------------------------------------------------------
async def amqp_connect(config: RabbitMqConfig, wait: float) -> Any:
    """An open ``aio_pika`` connection (named, so the management UI shows who it is)."""
    import aio_pika

    return await aio_pika.connect(
        config.url.get_secret_value(),
        timeout=wait,
        client_properties={"connection_name": "plait"},
    )


def redis_client(config: RedisConfig, timeout: float) -> Any:
    """A ``redis.asyncio`` client; it connects on its first command and reconnects
    by itself, so it can be kept."""
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(
        config.url.get_secret_value(), socket_connect_timeout=timeout, socket_timeout=timeout
    )


class _Unreachable(Exception):
    """No server answered; the message is the last reason the client gave."""


async def nats_connect(config: NatsConfig, wait: float) -> Any:
    """A connected ``nats`` client; if no server answers, :class:`_Unreachable` with
    the reason (nats-py itself only says ``NoServersError``)."""
    import nats

    errors: list[BaseException] = []

    async def on_error(exc: BaseException) -> None:
        errors[:] = [exc]  # the client would otherwise log every retry

    servers = [s.strip() for s in config.url.get_secret_value().split(",")]
    try:
        # One reconnect attempt: a client that gives up is closed, and the next step
        # opens a new one, rather than a publish waiting on reconnects for a minute.
        return await nats.connect(
            servers=servers,
            connect_timeout=wait,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
            name="plait",
        )
    except Exception as exc:
        if errors and not isinstance(exc, _auth_errors()):
            raise _Unreachable(_reason(errors[-1])) from exc
        raise


def _auth_errors() -> tuple[type[BaseException], ...]:
    import nats.errors

    return (nats.errors.AuthorizationError, nats.errors.InvalidUserCredentialsError)


def mqtt_client(config: MqttConfig, timeout: float) -> Any:
    """An ``aiomqtt`` client, to be entered (``async with``), with a client ID of its
    own: a broker disconnects the older of two clients with the same ID."""
    import aiomqtt

    parts = urlsplit(config.url.get_secret_value())
    tls = aiomqtt.TLSParameters(ca_certs=config.ca_file) if config.use_tls else None
    return aiomqtt.Client(
        hostname=parts.hostname or "",
        port=config.port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        identifier=f"plait-{secrets.token_hex(6)}",
        timeout=timeout,
        tls_params=tls,
    )


# -- failures ----------------------------------------------------------------------------
def failure(kind: str, config: BrokerConfig, exc: BaseException, label: str = "") -> ActionFailed:
    """A client error as a failure naming the broker (never its URL: it holds the
    password) and saying whether trying again can help."""
    reason, retryable = _CLASSIFY[kind](exc)
    return ActionFailed(f"{kind}{label} at {config.where()}: {reason}", retryable=retryable)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.errno and not text:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return text or type(exc).__name__


def _common(exc: BaseException) -> tuple[str, bool] | None:
    if isinstance(exc, _Unreachable):
        return f"cannot connect: {exc}", True
    if isinstance(exc, TimeoutError):
        return "no answer in time", True
    if isinstance(exc, OSError):
        return f"cannot connect: {_reason(exc)}", True
    return None


def _rabbitmq(exc: BaseException) -> tuple[str, bool]:
    import aiormq.exceptions as amqp

    if isinstance(exc, amqp.AuthenticationError | amqp.ProbableAuthenticationError):
        return f"login refused: {_server_text(exc)}", False
    if isinstance(exc, amqp.PublishError):
        return f"no queue took the message (mandatory): {_server_text(exc)}", True
    if isinstance(exc, amqp.DeliveryError):
        return "the broker refused the message (nack)", True
    if isinstance(exc, amqp.ChannelClosed):
        return _server_text(exc), False
    if isinstance(exc, amqp.InvalidFrameError):
        return "the broker closed the connection (does the vhost exist for this user?)", False
    return _common(exc) or (_reason(exc), True)


def _server_text(exc: BaseException) -> str:
    """What the broker said (``NOT_FOUND - no exchange 'x' in vhost '/'``) without the
    client's boilerplate around it."""
    import aiormq.exceptions as amqp

    if isinstance(exc, amqp.PublishError) and exc.args:
        return str(exc.args[0])
    text = str(exc)
    start, end = text.find('"'), text.rfind('"')
    return text[start + 1 : end] if 0 <= start < end else text


def _redis(exc: BaseException) -> tuple[str, bool]:
    import redis.exceptions as rx

    if isinstance(exc, rx.AuthenticationError | rx.AuthenticationWrongNumberOfArgsError):
        return f"login refused: {exc}", False
    if isinstance(exc, rx.ReadOnlyError):
        return f"the server is a read-only replica: {exc}", True
    if isinstance(exc, rx.ResponseError):
        return f"the server refused: {exc}", False
    if isinstance(exc, rx.TimeoutError):
        return f"no answer in time: {exc}", True
    if isinstance(exc, rx.ConnectionError):
        return f"cannot connect: {_reason(exc)}", True
    return _common(exc) or (_reason(exc), True)


def _nats(exc: BaseException) -> tuple[str, bool]:
    import nats.errors as nx
    import nats.js.errors as jx

    if isinstance(exc, _auth_errors()):
        return f"login refused: {exc}", False
    if isinstance(exc, jx.NoStreamResponseError):
        return "no JetStream stream takes this subject", False
    if isinstance(exc, jx.APIError):
        return f"JetStream refused: {exc.description or exc}", isinstance(
            exc, jx.ServiceUnavailableError
        )
    if isinstance(exc, nx.NoServersError):
        return "cannot connect: no server answered", True
    if isinstance(exc, nx.TimeoutError):
        return "no answer in time", True
    if isinstance(exc, nx.MaxPayloadError | nx.BadSubjectError | nx.BadHeaderError):
        return _reason(exc), False
    return _common(exc) or (_reason(exc), True)


def _mqtt(exc: BaseException) -> tuple[str, bool]:
    import aiomqtt

    if isinstance(exc, aiomqtt.MqttCodeError):
        code = getattr(exc.rc, "value", exc.rc)
        # 4, 5 (MQTT 3.1.1) and 134, 135 (MQTT 5): bad user name or password, not allowed
        if code in (4, 5, 134, 135):
            return f"login refused: {exc}", False
        return str(exc), True
    if isinstance(exc, aiomqtt.MqttError):
        text = str(exc)
        return (f"cannot connect: {text}" if "Errno" in text else text), True
    return _common(exc) or (_reason(exc), True)


_CLASSIFY: dict[str, Callable[[BaseException], tuple[str, bool]]] = {
    "rabbitmq": _rabbitmq,
    "redis": _redis,
    "nats": _nats,
    "mqtt": _mqtt,
}
