"""Routes: the TOTP second factor (``/api/v1/auth/mfa/…``), and its check at login.

Enrolment is two steps so that a mistyped secret cannot lock anyone out:
``POST /auth/mfa/enroll`` stores a new secret as *pending* (sealed with the keyring)
and returns it with its ``otpauth://`` URI; ``POST /auth/mfa/confirm`` with a code from
the app makes it active and returns ten recovery codes, shown this once and stored
hashed. From then on ``POST /auth/token`` needs ``otp``: a current code (each time step
is accepted once, so an observed code cannot be replayed) or an unused recovery code
(each works once). ``POST /auth/mfa/disable`` needs the password and a code. A lost
phone with lost recovery codes is an administrator's ``POST /auth/mfa/reset``.

The second factor is managed from a login session only — an API token acting for its
owner may not change how that owner logs in. Wrong passwords and codes given here
count towards the account lockout, like at login, so a stolen access token cannot be
used to guess the password. Every call is audited by the audit middleware.

The enrolment answer carries the ``otpauth://`` URI and the same as a QR code in SVG
(drawn with segno, a small pure-Python encoder), ready for the UI to show.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from plait.errors import NotFound
from plait.security import totp
from plait.security.passwords import verify_password
from plait.server.deps import Authenticated, Principal, invalidate_principals, require
from plait.server.errors import ApiError
from plait.server.ratelimit import record_failure
from plait.server.services import Services, get_services
from plait.store.accounts import MfaState, User

router = APIRouter(tags=["auth"])
ServicesDep = Annotated[Services, Depends(get_services)]
UserAdmin = Annotated[Principal, Depends(require("users:manage"))]
ISSUER = "Plait"
RECOVERY_CODES = 10


class MfaStatus(BaseModel):
    enabled: bool = Field(description="Logins need a second factor.")
    pending: bool = Field(description="Enrolled but not confirmed yet.")
    recovery_codes_left: int


class Enrolment(BaseModel):
    secret: str = Field(description="Base32 TOTP secret, for typing into an app by hand.")
    otpauth_uri: str = Field(description="The `otpauth://totp/…` URI to show as a QR code.")
    qr_svg: str | None = Field(
        default=None, description="`otpauth_uri` as an inline SVG QR code for the UI."
    )


class CodeRequest(BaseModel):
    code: str = Field(min_length=6, max_length=16, description="A code from the app.")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="Shown this once; each works once.")


class DisableRequest(BaseModel):
    password: str = Field(max_length=4096)
    code: str | None = Field(default=None, max_length=16, description="A code from the app.")
    recovery_code: str | None = Field(default=None, max_length=32)


class ResetRequest(BaseModel):
    user: str = Field(min_length=1, max_length=200)


def _own_user(services: Services, who: Principal) -> User:
    if who.kind != "user":
        raise ApiError(403, "the second factor is managed from a login session, not a token")
    return services.accounts.get_user(who.user_id)


def check_factor(services: Services, state: MfaState, code: str, now: float) -> str | None:
    """``totp`` or ``recovery_code`` if ``code`` is accepted (and is now used up), else
    None. Six digits are a TOTP code; anything else is tried as a recovery code."""
    mfa = services.accounts.mfa
    typed = "".join(code.split())
    if typed.isascii() and typed.isdigit():
        step = totp.verify(state.secret, typed, now, last_used_step=state.last_step)
        if step is None or not mfa.take_step(state.user_id, step):
            return None
        return "totp"
    hashes = mfa.unused_codes(state.user_id)
    index = totp.check_recovery(code, hashes)
    if index is None or not mfa.use_code(state.user_id, hashes[index], now):
        return None
    return "recovery_code"


@router.get("/auth/mfa", response_model=MfaStatus, summary="Second factor status")
def status(services: ServicesDep, who: Authenticated) -> MfaStatus:
    """Whether the caller's account has a second factor, and recovery codes left."""
    state = services.accounts.mfa.get(who.user_id)
    if state is None:
        return MfaStatus(enabled=False, pending=False, recovery_codes_left=0)
    left = state.recovery_left if state.active else 0
    return MfaStatus(enabled=state.active, pending=not state.active, recovery_codes_left=left)


@router.post(
    "/auth/mfa/enroll",
    response_model=Enrolment,
    summary="Start TOTP enrolment",
    responses={409: {"description": "A second factor is already active."}},
)
def enroll(services: ServicesDep, who: Authenticated) -> Enrolment:
    """A new TOTP secret for the caller, pending until confirmed. Enrolling again
    before confirming replaces the pending secret; an active one must be disabled first."""
    user = _own_user(services, who)
    secret = totp.new_secret()
    services.accounts.mfa.start(user.id, secret, services.clock())
    uri = totp.provisioning_uri(secret, user.name, issuer=ISSUER)
    return Enrolment(secret=secret, otpauth_uri=uri, qr_svg=qr_svg(uri))


@router.post(
    "/auth/mfa/confirm",
    response_model=RecoveryCodes,
    summary="Confirm TOTP enrolment",
    responses={400: {"description": "Wrong code."}, 409: {"description": "Nothing pending."}},
)
def confirm(body: CodeRequest, services: ServicesDep, who: Authenticated) -> RecoveryCodes:
    """Activate the pending secret with a current code from the app; returns ten
    recovery codes, shown this once. Logins need a second factor from now on."""
    user = _own_user(services, who)
    mfa = services.accounts.mfa
    state = mfa.get(user.id)
    if state is None or state.active:
        raise ApiError(409, "no pending enrolment: call POST /auth/mfa/enroll first")
    now = services.clock()
    step = totp.verify(state.secret, body.code, now)
    if step is None:
        raise ApiError(400, "wrong code: check the app and the clock", code="mfa_invalid")
    codes, hashes = totp.new_recovery_codes(RECOVERY_CODES)
    if not mfa.activate(user.id, step, hashes, now):
        raise ApiError(409, "the enrolment changed meanwhile: enrol again")
    return RecoveryCodes(recovery_codes=codes)


@router.post(
    "/auth/mfa/disable",
    status_code=204,
    summary="Turn the second factor off",
    responses={403: {"description": "Wrong password or code, or the account is locked."}},
)
def disable(
    request: Request, body: DisableRequest, services: ServicesDep, who: Authenticated
) -> Response:
    """Remove the caller's second factor (and recovery codes); needs the password and a
    current code or an unused recovery code."""
    user = _own_user(services, who)
    now = services.clock()
    if user.locked_until is not None and user.locked_until > now:
        raise ApiError(403, "the account is locked after repeated failures; try later")
    state = services.accounts.mfa.get(user.id)
    if state is None or not state.active:
        raise ApiError(409, "no second factor is active")
    given = body.code or body.recovery_code
    good = verify_password(user.password_hash, body.password)
    if not good or given is None or check_factor(services, state, given, now) is None:
        record_failure(services, request, user, now, "wrong password or code at mfa disable")
        raise ApiError(403, "wrong password or code")
    services.accounts.mfa.remove(user.id)
    return Response(status_code=204)


@router.post(
    "/auth/mfa/reset",
    status_code=204,
    summary="Remove a user's second factor (administrators)",
    responses={404: {"description": "No such user."}},
)
def reset(body: ResetRequest, services: ServicesDep, who: UserAdmin) -> Response:
    """For a user who lost both the app and the recovery codes. Needs ``users:manage``.
    The user's sessions are ended too: whoever holds them may not be the user."""
    user = services.accounts.find_user(body.user)
    if user is None:
        raise NotFound(f"user {body.user!r} not found")
    services.accounts.mfa.remove(user.id)
    services.accounts.revoke_sessions(user.id, services.clock())
    invalidate_principals(services)
    return Response(status_code=204)


def qr_svg(uri: str) -> str | None:
    """The URI as an inline SVG QR code; None if it cannot be encoded."""
    try:
        import segno

        svg: str = segno.make(uri, error="m").svg_inline(scale=4)
    except (ImportError, ValueError):
        return None
    return svg
