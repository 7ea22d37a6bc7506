"""Identifiers: time-ordered run ids and worker ids that say where a worker lives."""

from __future__ import annotations

import os
import secrets
import socket
import time
import uuid


def new_run_id(now: float | None = None) -> str:
    """A UUIDv7: random, yet sorted by creation time, so run lists page cheaply."""
    ms = int((time.time() if now is None else now) * 1000)
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | ((rand >> 64) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def new_worker_id() -> str:
    """``host:pid:nonce`` — enough to tell whether a lease holder may still be alive."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def worker_alive(worker: str | None) -> bool | None:
    """True/False when ``worker`` ran on this host (its pid is checked), None otherwise."""
    if not worker:
        return None
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return None  # another runner of this very process: only its lease can tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
