"""Plait security: masking secret values (:mod:`~plait.security.masking`) and sealing them
at rest (:mod:`~plait.security.crypto`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plait.security.masking import MASK, Masker

if TYPE_CHECKING:
    from plait.security.crypto import CryptoError, Keyring

__all__ = ["MASK", "CryptoError", "Keyring", "Masker"]


def __getattr__(name: str) -> Any:
    # cryptography is imported only by what seals or unseals, not by every user of the
    # masker (the runtime masks every log line; the CLI's start-up stays cheap).
    if name in {"Keyring", "CryptoError"}:
        from plait.security import crypto

        return getattr(crypto, name)
    raise AttributeError(f"module 'plait.security' has no attribute {name!r}")
