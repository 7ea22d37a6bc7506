"""Time-based one-time passwords (RFC 6238) and recovery codes for the second factor.

pyotp computes the codes (the HOTP truncation of RFC 4226 is easy to get subtly wrong);
this module adds what pyotp leaves to the caller: an explicit ``now`` instead of the
clock, and replay refusal. :func:`verify` returns the time step a code belonged to;
the caller stores it and passes it back as ``last_used_step``, and any code of that
step or an earlier one is refused, so a code seen over someone's shoulder cannot be
used again within its validity window.

The TOTP secret must be stored encrypted (see :mod:`plait.security.crypto`), since
unlike a password hash it is what the server needs in the clear to check a code.
Recovery codes are single-use, 80 random bits each, so a SHA-256 of them is enough
(there is nothing to brute-force); the caller deletes a hash once its code is used.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

import pyotp

DIGITS = 6
INTERVAL = 30  # seconds per time step; what every authenticator app assumes
DEFAULT_WINDOW = 1  # steps accepted either side: tolerates 30 s of skew or a slow typist
_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}

# Crockford-style alphabet: no 0/O or 1/I/L to misread when typing a code off paper.
_RECOVERY_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_RECOVERY_GROUPS = 4
_RECOVERY_GROUP_LEN = 4  # 16 characters from 31: about 79 bits


def new_secret() -> str:
    """A new base32 secret of 160 bits, the length RFC 4226 recommends."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str, issuer: str = "Plait") -> str:
    """The ``otpauth://totp/…`` URI an authenticator app scans as a QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(
        name=account, issuer_name=issuer
    )


def step_at(now: float, interval: int = INTERVAL) -> int:
    """The RFC 6238 time step ``T`` for ``now``."""
    return int(now // interval)


def code_at(secret: str, now: float, *, digits: int = DIGITS, algorithm: str = "sha1") -> str:
    """The code for ``now`` (``algorithm``: sha1, sha256 or sha512)."""
    totp = pyotp.TOTP(secret, digits=digits, digest=_DIGESTS[algorithm], interval=INTERVAL)
    return totp.generate_otp(step_at(now))


def verify(
    secret: str,
    code: str,
    now: float,
    window: int = DEFAULT_WINDOW,
    last_used_step: int | None = None,
) -> int | None:
    """The time step ``code`` is valid for at ``now``, or None if it is not accepted.

    A code is accepted within ``window`` steps of ``now`` and only for a step after
    ``last_used_step``. Spaces in the code are ignored (apps show ``123 456``).
    Every step in the window is compared in constant time, with no early exit.
    A stored secret that is not base32 of at least 112 bits raises ``ValueError``:
    that is damaged data, not a wrong code.
    """
    if window < 0:
        raise ValueError("window must not be negative")
    typed = "".join(code.split())
    if len(typed) != DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    current = step_at(now)
    matched: int | None = None
    for step in range(current - window, current + window + 1):
        if step < 0:
            continue
        if hmac.compare_digest(totp.generate_otp(step), typed) and matched is None:
            matched = step
    if matched is None or (last_used_step is not None and matched <= last_used_step):
        return None
    return matched


def _normalise_recovery(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def hash_recovery_code(code: str) -> str:
    """The SHA-256 hex digest a recovery code is stored under (dashes and case ignored)."""
    return hashlib.sha256(_normalise_recovery(code).encode("utf-8")).hexdigest()


def new_recovery_codes(n: int = 10) -> tuple[list[str], list[str]]:
    """``n`` new recovery codes (``ABCD-EFGH-JKMN-PQRS``) and their hashes, same order.

    Show the codes to the user once; store only the hashes.
    """
    codes = ["-".join(_random_group() for _ in range(_RECOVERY_GROUPS)) for _ in range(n)]
    return codes, [hash_recovery_code(c) for c in codes]


def _random_group() -> str:
    return "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_GROUP_LEN))


def check_recovery(code: str, hashes: Sequence[str]) -> int | None:
    """The index of the hash ``code`` matches, or None; the caller then deletes it.

    Every hash is compared, in constant time, so timing does not reveal which matched.
    """
    typed = hash_recovery_code(code)
    found: int | None = None
    for index, stored in enumerate(hashes):
        if hmac.compare_digest(typed, stored) and found is None:
            found = index
    return found
