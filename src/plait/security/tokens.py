"""Access tokens (JWT), rotating refresh tokens, and scoped API tokens.

Three kinds of credential, for three lifetimes:

* **Access tokens** are short-lived HS256 JWTs: the API checks them without a database
  read. Only HS256 is accepted, whatever the token's header says, so the classic
  ``alg: none`` and algorithm-confusion forgeries are refused before anything else is
  looked at. Time checks use the ``now`` passed in (PyJWT's own clock checks are turned
  off), with a small explicit leeway for clock skew between API processes.
* **Refresh tokens** are opaque random strings, valid once. The store keeps only their
  SHA-256 (the tokens carry 256 random bits, so a fast hash is enough: there is nothing
  to brute-force). Each use issues the next token of the same *family*; presenting a
  token that was already used means two parties hold it, so the whole family — the
  login session — is revoked (:class:`RefreshFamily`).
* **API tokens** are long-lived random strings with a recognisable prefix (so secret
  scanners and log masking can spot them), stored hashed, restricted by scopes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import jwt

from plait.errors import PlaitError

ALGORITHM = "HS256"
ACCESS_TYPE = "access"
DEFAULT_ACCESS_TTL = 900  # seconds
# API processes share NTP time; 30 s covers ordinary skew without stretching expiry much.
DEFAULT_LEEWAY = 30
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
MAX_TOKEN_LENGTH = 8192  # a larger "token" is an attack on the parser, not a login
REQUIRED_CLAIMS = ("sub", "iat", "nbf", "exp", "jti", "iss", "typ")


class TokenError(PlaitError):
    """A token was refused; ``reason`` is a short code, the message is for humans.

    Reasons: ``malformed``, ``algorithm``, ``signature``, ``missing_claim``,
    ``bad_claim``, ``issuer``, ``type``, ``expired``, ``not_yet_valid``.
    The API should answer every one of them with the same 401 and log the reason.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or reason)


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of an access token.

    ``roles`` is informational (for a UI to show); authorisation reads the subject's
    role bindings from the store on each request, so a revoked role takes effect at
    once instead of when the token expires. ``session`` is the refresh family id, which
    lets the server refuse access tokens of a session that was logged out.
    """

    sub: str
    iat: int
    nbf: int
    exp: int
    jti: str
    iss: str
    typ: str = ACCESS_TYPE
    roles: tuple[str, ...] = ()
    session: str | None = None

    def to_payload(self) -> dict[str, Any]:
        """The JWT payload; optional claims are left out when empty."""
        payload: dict[str, Any] = {
            "sub": self.sub,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "jti": self.jti,
            "iss": self.iss,
            "typ": self.typ,
        }
        if self.roles:
            payload["roles"] = list(self.roles)
        if self.session is not None:
            payload["sid"] = self.session
        return payload


class TokenIssuer:
    """Issues and checks access tokens under one HMAC secret.

    Holds configuration only (no state changes after construction), so one instance
    is built by the composition root and shared.
    """

    def __init__(
        self,
        secret: bytes,
        issuer: str = "plait",
        access_ttl: int = DEFAULT_ACCESS_TTL,
        leeway: int = DEFAULT_LEEWAY,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        if access_ttl <= 0 or leeway < 0:
            raise ValueError("access_ttl must be positive and leeway not negative")
        self._secret = secret
        self.issuer = issuer
        self.access_ttl = access_ttl
        self.leeway = leeway

    def issue_access(
        self,
        subject: str,
        *,
        now: float,
        roles: Iterable[str] = (),
        session: str | None = None,
    ) -> tuple[str, Claims]:
        """A signed access token for ``subject`` valid from ``now`` for ``access_ttl``."""
        if not subject:
            raise ValueError("an access token needs a subject")
        issued = int(now)
        claims = Claims(
            sub=subject,
            iat=issued,
            nbf=issued,
            exp=issued + self.access_ttl,
            jti=secrets.token_hex(16),
            iss=self.issuer,
            roles=tuple(roles),
            session=session,
        )
        token = jwt.encode(claims.to_payload(), self._secret, algorithm=ALGORITHM)
        return token, claims

    def decode_access(self, token: str, now: float) -> Claims:
        """The claims of a valid access token; anything else raises :class:`TokenError`."""
        payload = self._verified_payload(token)
        claims = _claims_from_payload(payload)
        if claims.iss != self.issuer:
            raise TokenError("issuer", f"the token was issued by {claims.iss!r}")
        if claims.typ != ACCESS_TYPE:
            raise TokenError("type", f"a {claims.typ!r} token is not an access token")
        self._check_times(claims, now)
        return claims

    def _verified_payload(self, token: str) -> dict[str, Any]:
        """Check the header and the signature; the claims are checked afterwards."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("malformed", "the token is empty or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise TokenError("malformed", "the token is not a JWT") from exc
        if header.get("alg") != ALGORITHM:
            raise TokenError("algorithm", f"algorithm {header.get('alg')!r} is not accepted")
        try:
            # PyJWS checks only the signature; every claim is checked here, against the
            # `now` passed in, rather than by PyJWT against the wall clock.
            raw = jwt.PyJWS().decode(token, self._secret, algorithms=[ALGORITHM])
        except jwt.InvalidSignatureError as exc:
            raise TokenError("signature", "the token signature is not valid") from exc
        except jwt.InvalidTokenError as exc:  # the header was checked; this is defensive
            raise TokenError("malformed", f"the token cannot be read: {exc}") from exc
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise TokenError("malformed", "the token payload is not JSON") from exc
        if not isinstance(payload, dict):
            raise TokenError("malformed", "the token payload is not a JSON object")
        return payload

    def _check_times(self, claims: Claims, now: float) -> None:
        if now >= claims.exp + self.leeway:
            raise TokenError("expired", "the token has expired")
        if now + self.leeway < claims.nbf or now + self.leeway < claims.iat:
            raise TokenError("not_yet_valid", "the token is not valid yet")


def _claims_from_payload(payload: dict[str, Any]) -> Claims:
    """Typed claims, refusing a payload with a missing or mistyped claim."""
    for name in REQUIRED_CLAIMS:
        if payload.get(name) is None:
            raise TokenError("missing_claim", f"the token has no {name!r} claim")
    for name in ("iat", "nbf", "exp"):
        value = payload[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError("bad_claim", f"claim {name!r} must be an integer")
    for name in ("sub", "jti", "iss", "typ"):
        if not isinstance(payload[name], str) or not payload[name]:
            raise TokenError("bad_claim", f"claim {name!r} must be a non-empty string")
    roles = payload.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenError("bad_claim", "claim 'roles' must be a list of strings")
    session = payload.get("sid")
    if session is not None and not isinstance(session, str):
        raise TokenError("bad_claim", "claim 'sid' must be a string")
    return Claims(
        sub=payload["sub"],
        iat=payload["iat"],
        nbf=payload["nbf"],
        exp=payload["exp"],
        jti=payload["jti"],
        iss=payload["iss"],
        typ=payload["typ"],
        roles=tuple(roles),
        session=session,
    )


# --- opaque tokens -------------------------------------------------------------------


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which an opaque token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_refresh_token() -> tuple[str, str]:
    """A new refresh token (256 random bits) and its hash; only the hash is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """What the store keeps for one refresh token.

    ``expires_at`` limits how long this token may sit unused (idle timeout);
    ``family_expires_at`` limits the whole login session however often it is rotated.
    ``used_at`` is set when the token is exchanged; ``revoked_at`` when its family is
    revoked (logout, theft, password change).
    """

    token_hash: str
    family_id: str
    subject: str
    issued_at: int
    expires_at: int
    family_expires_at: int
    used_at: int | None = None
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class RotateResult:
    """The outcome of presenting a refresh token.

    On success ``used_record`` (the presented record, now marked used) replaces the old
    row and ``new_record`` is inserted, in one transaction; ``token`` goes to the client.
    When ``revoke_family`` is true the store revokes every record of the family.
    """

    ok: bool
    reason: str
    used_record: RefreshRecord | None = None
    new_record: RefreshRecord | None = None
    token: str | None = None
    revoke_family: bool = False


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    """The rotation rules for refresh tokens, as a pure state machine over records.

    The store must apply a rotation with a compare-and-set (``UPDATE … WHERE used_at IS
    NULL``); if no row changed, another request used the token first and the caller
    should run :meth:`rotate` again on the re-read record, which then reports reuse.
    """

    ttl: int = 14 * 24 * 3600
    max_lifetime: int = 30 * 24 * 3600

    def start(self, subject: str, now: float) -> tuple[str, RefreshRecord]:
        """The first token of a new family, issued at login."""
        issued = int(now)
        token, token_hash = new_refresh_token()
        record = RefreshRecord(
            token_hash=token_hash,
            family_id=secrets.token_hex(16),
            subject=subject,
            issued_at=issued,
            expires_at=issued + self.ttl,
            family_expires_at=issued + self.max_lifetime,
        )
        return token, record

    def rotate(self, record: RefreshRecord, now: float) -> RotateResult:
        """Exchange ``record``'s token for the next one, or say why not.

        Order matters: a revoked family stays revoked; a reused token revokes its family
        even if it has expired since (the theft signal does not expire).
        """
        at = int(now)
        if record.revoked_at is not None:
            return RotateResult(ok=False, reason="revoked")
        if record.used_at is not None:
            return RotateResult(ok=False, reason="reused", revoke_family=True)
        if at >= record.family_expires_at:
            return RotateResult(ok=False, reason="session_expired")
        if at >= record.expires_at:
            return RotateResult(ok=False, reason="expired")
        token, token_hash = new_refresh_token()
        new_record = RefreshRecord(
            token_hash=token_hash,
            family_id=record.family_id,
            subject=record.subject,
            issued_at=at,
            expires_at=min(at + self.ttl, record.family_expires_at),
            family_expires_at=record.family_expires_at,
        )
        return RotateResult(
            ok=True,
            reason="rotated",
            used_record=replace(record, used_at=at),
            new_record=new_record,
            token=token,
        )


# --- API tokens and scopes -----------------------------------------------------------

API_TOKEN_PREFIX = "plt_"
_DISPLAY_CHARS = 6  # shown after the prefix in lists, enough to tell tokens apart

SCOPES: frozenset[str] = frozenset(
    {
        "workflows:read",
        "workflows:write",
        "runs:read",
        "runs:write",
        "runs:approve",
        "events:write",
        "secrets:read",
        "secrets:write",
        "admin",
    }
)
# A scope also grants the ones listed for it; `admin` grants every scope.
_IMPLIED: dict[str, frozenset[str]] = {
    "workflows:write": frozenset({"workflows:read"}),
    "runs:write": frozenset({"runs:read"}),
    "runs:approve": frozenset({"runs:read"}),
    "secrets:write": frozenset({"secrets:read"}),
}


def new_api_token(prefix: str = API_TOKEN_PREFIX) -> tuple[str, str, str]:
    """A new API token, its hash for the store, and a prefix safe to display.

    The token is shown to its owner once; afterwards lists show the display prefix
    (``plt_AbC123``) so a user can tell which token is which.
    """
    token = prefix + secrets.token_urlsafe(32)
    return token, hash_token(token), token[: len(prefix) + _DISPLAY_CHARS]


def is_api_token(token: str, prefix: str = API_TOKEN_PREFIX) -> bool:
    """True if a bearer credential is an API token rather than a JWT (``eyJ…``)."""
    return token.startswith(prefix)


def api_token_usable(expires_at: int | None, revoked_at: int | None, now: float) -> bool:
    """True if an API token is neither revoked nor past its expiry (``None``: none)."""
    if revoked_at is not None:
        return False
    return expires_at is None or now < expires_at


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Messages for every unknown scope, for a 422 when a token is created."""
    known = ", ".join(sorted(SCOPES))
    return [f"unknown scope {s!r} (known: {known})" for s in scopes if s not in SCOPES]


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope granted by ``scopes``, following the implications."""
    given = frozenset(scopes)
    if "admin" in given:
        return SCOPES
    implied = (_IMPLIED.get(s, frozenset()) for s in given)
    return given.union(*implied) & SCOPES


def scope_allows(scopes: Iterable[str], needed: str) -> bool:
    """True if a token with ``scopes`` may do what ``needed`` covers."""
    return needed in expand_scopes(scopes)
