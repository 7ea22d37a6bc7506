"""``uses: example.greet`` — format a greeting, log it, and sign it when a connection
holds a signing key.

Small on purpose: it shows every part a real plugin has — an input model (what the
editor's form and ``plait validate`` check), an output model, a log line, a failure
that says what is wrong, and a connection type whose credential reaches the action
without ever appearing in a workflow file or a log.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.connections import ConnectionConfig, ConnectionType

#: A key shorter than this is refused by the connection test: it would sign nothing.
MIN_KEY_LENGTH = 16


class GreeterConfig(ConnectionConfig):
    greeting: str = Field("Hello", min_length=1, description="The greeting word, e.g. `Hi`.")
    signing_key: SecretStr | None = Field(
        None, description="Signs each greeting with HMAC-SHA256 (stored encrypted)."
    )


class GreeterConnection(ConnectionType):
    """A greeter: its greeting word and an optional signing key."""

    name = "example"
    description = "The example plugin's greeter: a greeting word and an optional signing key."
    Config = GreeterConfig

    async def test(self, config: GreeterConfig) -> str:
        if config.signing_key is None:
            return f"greets with {config.greeting!r}, unsigned"
        if len(config.signing_key.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"the signing key is shorter than {MIN_KEY_LENGTH} characters")
        return f"greets with {config.greeting!r}, signed with HMAC-SHA256"


class GreetInput(ActionInput):
    name: str = Field(min_length=1, description="Who to greet.")
    greeting: str | None = Field(
        None, description="The greeting word (default: the connection's, else `Hello`)."
    )
    punctuation: Literal["!", ".", "?"] = Field("!", description="How the greeting ends.")
    connection: str | None = Field(
        None, description="An `example` connection: its greeting and signing key."
    )


class GreetOutput(BaseModel):
    greeting: str = Field(description="The greeting, e.g. `Hello, Ada!`.")
    length: int = Field(description="Its length in characters.")
    signature: str | None = Field(
        None, description="Hex HMAC-SHA256 of the greeting with the connection's key."
    )


class GreetAction(Action):
    name = "example.greet"
    version = "1.0"
    description = "Format a greeting, log it, and sign it with a connection's key."
    Input = GreetInput
    Output = GreetOutput

    async def execute(self, ctx: ActionContext, input: GreetInput) -> ActionResult:
        word, key = input.greeting, None
        if input.connection:
            config = self._config(ctx, input.connection)
            word = word or config.greeting
            key = config.signing_key.get_secret_value() if config.signing_key else None
        text = f"{word or 'Hello'}, {input.name}{input.punctuation}"
        ctx.log("stdout", text)
        signature = None
        if key:
            signature = hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()
        output = GreetOutput(greeting=text, length=len(text), signature=signature)
        return ActionResult(outputs=output.model_dump())

    @staticmethod
    def _config(ctx: ActionContext, name: str) -> GreeterConfig:
        found = ctx.connection(name)  # a missing one fails the step with a clear message
        if found.type != GreeterConnection.name:
            raise ActionFailed(
                f"connection {name!r} is a {found.type!r} connection; example.greet needs "
                f"an {GreeterConnection.name!r} one",
                retryable=False,
            )
        return GreeterConfig.model_validate(dict(found.config))
