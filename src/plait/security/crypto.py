"""AES-256-GCM encryption of secret values at rest, with several key versions.

A sealed value is::

    version (1 byte, 0x01) | key id length (1 byte) | key id (UTF-8) | nonce (12 bytes)
    | ciphertext and 16-byte tag

The header (version and key id) is authenticated as associated data, so changing the
key id or any other byte makes :meth:`Keyring.unseal` fail rather than decrypt garbage.
The newest key seals; every key in the ring unseals, so after ``plait secrets
rotate-key`` old values stay readable until they are re-sealed.

Keys come from ``PLAIT_SECRET_KEY`` (one base64 key of 32 bytes, or ``id:base64`` pairs
separated by commas) or from a key file (``$PLAIT_HOME/keys/secret.key``: one
``id:base64`` line per key), created on first use. In both, keys are listed oldest first:
the last one seals.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import secrets as random
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from plait.errors import PlaitError

if TYPE_CHECKING:  # imported on first seal or unseal: many processes never need it
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ENV_VAR = "PLAIT_SECRET_KEY"
KEY_FILE_ENV_VAR = "PLAIT_SECRET_KEY_FILE"


class CryptoError(PlaitError):
    """A value could not be sealed or unsealed, or a key is unusable."""


class Keyring:
    """AES-256-GCM keys by id; implements the store's ``Sealer`` protocol."""

    def __init__(self, keys: Mapping[str, bytes], *, path: Path | None = None) -> None:
        """``keys`` oldest first (the last seals). ``path``: the key file that
        :meth:`rotate` writes back to (None for keys from the environment or memory)."""
        if not keys:
            raise CryptoError("a keyring needs at least one key")
        self._keys: dict[str, bytes] = {}  # oldest first
        self._aeads: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            self._add(key_id, key)
        self.path = path
        self.from_env = False

    # -- construction ------------------------------------------------------------------
    @classmethod
    def generate(cls) -> Keyring:
        """A keyring with one fresh random key, in memory."""
        return cls({"1": os.urandom(KEY_BYTES)})

    @classmethod
    def from_text(cls, text: str, *, source: str = ENV_VAR) -> Keyring:
        """Keys as written in ``PLAIT_SECRET_KEY`` or a key file (see the module doc)."""
        return cls(_parse_keys(text, source))

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        _warn_if_readable_by_others(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CryptoError(f"cannot read the key file {path}: {exc.strerror}") from exc
        return cls(_parse_keys(text, str(path)), path=path)

    @classmethod
    def load_or_create(cls, home: Path, environ: Mapping[str, str] | None = None) -> Keyring:
        """The keys from ``PLAIT_SECRET_KEY`` if set, else from the key file
        (``PLAIT_SECRET_KEY_FILE`` or ``home/keys/secret.key``), which is created with a
        new key (0600, in a 0700 directory) when it does not exist."""
        environ = os.environ if environ is None else environ
        if environ.get(ENV_VAR, "").strip():
            keyring = cls.from_text(environ[ENV_VAR])
            keyring.from_env = True
            return keyring
        path = Path(environ.get(KEY_FILE_ENV_VAR) or home / "keys" / "secret.key")
        if path.exists():
            return cls.from_file(path)
        keyring = cls.generate()
        keyring.path = path
        try:
            keyring.save(path, exclusive=True)
        except FileExistsError:  # another process created it first: use theirs
            return cls.from_file(path)
        logger.info("created a new secret key in %s", path)
        return keyring

    # -- the Sealer protocol -----------------------------------------------------------
    def seal(self, plaintext: bytes) -> bytes:
        key_id = self.current_key_id
        header = _header(key_id)
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + self._aead(key_id).encrypt(nonce, plaintext, header)

    def unseal(self, sealed: bytes) -> bytes:
        key_id, header_len = self._read_header(sealed)
        if key_id not in self._keys:
            known = ", ".join(self._keys)
            raise CryptoError(
                f"this value was sealed with key {key_id!r}, which is not in the keyring "
                f"(known: {known}); set {ENV_VAR} or restore the key file that has it"
            )
        from cryptography.exceptions import InvalidTag

        nonce = sealed[header_len : header_len + NONCE_BYTES]
        try:
            return self._aead(key_id).decrypt(
                nonce, sealed[header_len + NONCE_BYTES :], sealed[:header_len]
            )
        except InvalidTag:
            raise CryptoError(
                f"a sealed value failed authentication with key {key_id!r}: it was altered, "
                "or the key with that id is not the one that sealed it"
            ) from None

    # -- keys --------------------------------------------------------------------------
    @property
    def current_key_id(self) -> str:
        """The id of the key that seals (the newest)."""
        return next(reversed(self._keys))

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def key_id_of(self, sealed: bytes) -> str:
        """Which key sealed ``sealed`` (re-sealing after a rotation skips current ones)."""
        return self._read_header(sealed)[0]

    def rotate(self) -> str:
        """Add a new key, which seals from now on, and save the key file; returns its id.

        Keys from ``PLAIT_SECRET_KEY`` cannot be rotated here: the new key would be lost
        on restart, with everything sealed under it."""
        if self.from_env:
            raise CryptoError(
                f"the keys come from {ENV_VAR}: add a new key there as a further "
                "`id:base64` item (the last seals), restart, then re-seal"
            )
        key_id = self._next_id()
        self._add(key_id, os.urandom(KEY_BYTES))
        if self.path is not None:
            self.save(self.path)
        return key_id

    def to_text(self) -> str:
        """The keys as ``id:base64`` items, comma-separated (the form of
        ``PLAIT_SECRET_KEY``). This is the secret: handle it as one."""
        return ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in self._keys.items())

    def save(self, path: Path, *, exclusive: bool = False) -> None:
        """Write the key file atomically, 0600 in a 0700 directory. ``exclusive``: raise
        FileExistsError if it exists (two processes creating the first key must not both
        win)."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = "".join(f"{k}:{base64.b64encode(v).decode()}\n" for k, v in self._keys.items())
        _write_private(path, text.encode("ascii"), exclusive=exclusive)

    # -- internals ---------------------------------------------------------------------
    def _add(self, key_id: str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise CryptoError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        _header(key_id)  # validates the id
        self._keys.pop(key_id, None)  # re-adding an id makes it the newest
        self._aeads.pop(key_id, None)
        self._keys[key_id] = key

    def _aead(self, key_id: str) -> AESGCM:
        aead = self._aeads.get(key_id)
        if aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            aead = self._aeads[key_id] = AESGCM(self._keys[key_id])
        return aead

    def _next_id(self) -> str:
        numbers = [int(k) for k in self._keys if k.isdigit()]
        candidate = max(numbers, default=0) + 1
        while str(candidate) in self._keys:
            candidate += 1
        return str(candidate)

    def _read_header(self, sealed: bytes) -> tuple[str, int]:
        if len(sealed) < 2 or sealed[0] != FORMAT_VERSION:
            first = f"0x{sealed[0]:02x}" if sealed else "nothing"
            raise CryptoError(f"not a sealed value (format byte {first}, expected 0x01)")
        header_len = 2 + sealed[1]
        if len(sealed) < header_len + NONCE_BYTES + TAG_BYTES:
            raise CryptoError("a sealed value is truncated")
        try:
            key_id = sealed[2:header_len].decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("a sealed value has a corrupt key id") from None
        return key_id, header_len


def _header(key_id: str) -> bytes:
    encoded = key_id.encode("utf-8")
    if not encoded or len(encoded) > 255 or any(c in key_id for c in ":,\n\r \t"):
        raise CryptoError(f"{key_id!r} is not a key id (1-255 bytes; no ':', ',' or spaces)")
    return bytes([FORMAT_VERSION, len(encoded)]) + encoded


def _parse_keys(text: str, source: str) -> dict[str, bytes]:
    """``id:base64`` items (commas or lines); a single bare base64 key gets id "1"."""
    items = [
        item.strip()
        for line in text.splitlines()
        if not line.strip().startswith("#")
        for item in line.split(",")
        if item.strip()
    ]
    if not items:
        raise CryptoError(f"{source} holds no key")
    keys: dict[str, bytes] = {}
    for item in items:
        key_id, sep, encoded = item.rpartition(":")
        if not sep:
            if len(items) > 1:
                raise CryptoError(f"{source}: with several keys, write each as id:base64")
            key_id = "1"
        keys[key_id.strip()] = _decode_key(encoded.strip(), key_id, source)
    return keys


def _decode_key(encoded: str, key_id: str, source: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"{source}: key {key_id!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise CryptoError(
            f"{source}: key {key_id!r} is {len(key)} bytes; it must be {KEY_BYTES} random "
            "bytes in base64 (e.g. `openssl rand -base64 32`)"
        )
    return key


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write via a 0600 temporary file in the same directory, fsync, then rename (or
    link, when ``exclusive``), so a crash never leaves a half-written key file."""
    tmp = path.with_name(f".{path.name}.{random.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if exclusive:
            os.link(tmp, path)  # unlike rename, fails when the target exists
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _warn_if_readable_by_others(path: Path) -> None:
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning(
                "the key file %s is accessible to other users (mode %o); chmod 600 it",
                path,
                stat.S_IMODE(mode),
            )
