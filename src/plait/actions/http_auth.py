"""How the ``http`` action authenticates: the ``auth:`` choices and the OAuth2 token cache.

``auth:`` is exactly one of ``bearer``, ``basic``, ``api_key`` or ``oauth2`` (client
credentials grant, RFC 6749 §4.4). An ``http`` connection holds the same choices with its
credentials stored sealed; :func:`auth_from_connection` turns one into the other, so
both take one code path from here on.

OAuth2 tokens are cached per action instance — so across the steps and runs of one
worker — until shortly before they expire. The cache key holds a hash of the client
secret as well as the token URL, client id, scope and audience: a workflow that knows
another one's client id but not its secret must not be handed that client's token.
httpx is imported only when a token is fetched.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import Field, model_validator

from plait.actions.base import ActionFailed, ActionInput

if TYPE_CHECKING:
    import httpx

#: a token is renewed this long before it expires (at most; 10% of a short lifetime)
EXPIRY_MARGIN = 60.0
AUTH_KINDS = ("bearer", "basic", "api_key", "oauth2")


class BasicAuth(ActionInput):
    username: str
    password: str


class ApiKeyAuth(ActionInput):
    header: str = Field("X-API-Key", description="The header that carries the key.")
    value: str = Field(description="The key.")


class OAuth2Auth(ActionInput):
    token_url: str = Field(description="The authorization server's token endpoint.")
    client_id: str
    client_secret: str
    scope: str | None = Field(None, description="Space-separated scopes to ask for.")
    audience: str | None = Field(None, description="The API the token is for (Auth0 and others).")
    client_auth: Literal["basic", "post"] = Field(
        "basic", description="Send the client credentials as HTTP Basic (default) or in the form."
    )


class AuthInput(ActionInput):
    """Exactly one way to authenticate."""

    bearer: str | None = Field(None, description="A token sent as `Authorization: Bearer`.")
    basic: BasicAuth | None = None
    api_key: ApiKeyAuth | None = None
    oauth2: OAuth2Auth | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AuthInput:
        given = [kind for kind in AUTH_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"auth takes exactly one of {', '.join(AUTH_KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in AUTH_KINDS if getattr(self, kind) is not None)

    def secret_values(self) -> list[str]:
        """The credentials in it, for the run's masking."""
        if self.bearer is not None:
            return [self.bearer]
        if self.basic is not None:
            return [self.basic.password, _basic_value(self.basic.username, self.basic.password)]
        if self.api_key is not None:
            return [self.api_key.value]
        assert self.oauth2 is not None
        return [self.oauth2.client_secret]


def auth_from_connection(config: Mapping[str, Any]) -> AuthInput | None:
    """The ``auth:`` an ``http`` connection's flat fields describe (None: no auth)."""
    if config.get("bearer_token"):
        return AuthInput(bearer=config["bearer_token"])
    if config.get("username") is not None or config.get("password") is not None:
        basic = BasicAuth(
            username=config.get("username") or "", password=config.get("password") or ""
        )
        return AuthInput(basic=basic)
    if config.get("api_key"):
        header = config.get("api_key_header") or "X-API-Key"
        return AuthInput(api_key=ApiKeyAuth(header=header, value=config["api_key"]))
    if config.get("token_url"):
        fields = ("token_url", "client_id", "client_secret", "scope", "audience", "client_auth")
        oauth = {k: config[k] for k in fields if config.get(k) is not None}
        return AuthInput(oauth2=OAuth2Auth.model_validate(oauth))
    return None


def _basic_value(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def static_headers(auth: AuthInput) -> dict[str, str]:
    """The headers of every auth kind but OAuth2 (whose token must be fetched)."""
    if auth.bearer is not None:
        return {"Authorization": f"Bearer {auth.bearer}"}
    if auth.basic is not None:
        return {"Authorization": _basic_value(auth.basic.username, auth.basic.password)}
    if auth.api_key is not None:
        return {auth.api_key.header: auth.api_key.value}
    return {}


@dataclass(slots=True)
class _Token:
    value: str
    #: monotonic time after which it is not used again (None: until a 401 says so)
    renew_at: float | None


class TokenCache:
    """OAuth2 access tokens by client, fetched once and shared until they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    @staticmethod
    def key(spec: OAuth2Auth) -> tuple[str, ...]:
        secret = hashlib.sha256(spec.client_secret.encode()).hexdigest()
        return (spec.token_url, spec.client_id, spec.scope or "", spec.audience or "", secret)

    async def token(
        self, client: httpx.AsyncClient, spec: OAuth2Auth, seconds: float
    ) -> tuple[str, bool]:
        """A valid access token, and whether it was fetched just now. Concurrent steps
        of the same client wait for one request rather than each making their own."""
        key = self.key(spec)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and (cached.renew_at is None or self._clock() < cached.renew_at):
                return cached.value, False
            fetched = await _fetch_token(client, spec, seconds, self._clock)
            self._tokens[key] = fetched
            return fetched.value, True

    def drop(self, spec: OAuth2Auth, value: str) -> None:
        """Forget ``value`` (the server refused it), unless another step already
        replaced it with a newer one."""
        key = self.key(spec)
        cached = self._tokens.get(key)
        if cached is not None and cached.value == value:
            del self._tokens[key]


async def _fetch_token(
    client: httpx.AsyncClient, spec: OAuth2Auth, seconds: float, clock: Callable[[], float]
) -> _Token:
    import httpx

    form = {"grant_type": "client_credentials"}
    if spec.scope:
        form["scope"] = spec.scope
    if spec.audience:
        form["audience"] = spec.audience
    headers = {"Accept": "application/json"}
    if spec.client_auth == "basic":
        # RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
        user, secret = quote(spec.client_id, safe=""), quote(spec.client_secret, safe="")
        headers["Authorization"] = _basic_value(user, secret)
    else:
        form |= {"client_id": spec.client_id, "client_secret": spec.client_secret}
    where = f"oauth2 token request to {spec.token_url}"
    started = clock()
    try:
        response = await client.post(spec.token_url, data=form, headers=headers, timeout=seconds)
    except httpx.HTTPError as exc:
        raise ActionFailed(f"{where}: {type(exc).__name__}: {exc}") from exc
    return _parse_token(where, response, started)


def _parse_token(where: str, response: httpx.Response, started: float) -> _Token:
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if response.status_code >= 400:
        detail = ""
        if isinstance(data, dict) and data.get("error"):
            detail = f": {data['error']} {data.get('error_description') or ''}".rstrip()
        raise ActionFailed(
            f"{where} was refused ({response.status_code}){detail}",
            retryable=response.status_code >= 500 or response.status_code == 429,
        )
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise ActionFailed(f"{where}: the answer has no access_token", retryable=False)
    token_type = str(data.get("token_type") or "bearer")
    if token_type.lower() != "bearer":
        raise ActionFailed(f"{where}: token_type {token_type!r} is not supported", retryable=False)
    lifetime = data.get("expires_in")
    renew_at = None
    if isinstance(lifetime, int | float | str) and str(lifetime).replace(".", "", 1).isdigit():
        seconds = float(lifetime)
        renew_at = started + seconds - min(EXPIRY_MARGIN, seconds / 10)
    return _Token(data["access_token"], renew_at)
