"""AES-256-GCM keyring: sealing, tampering, key versions, key files and env keys."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from plait.security.crypto import CryptoError, Keyring
from plait.store.base import Sealer


def b64key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def test_round_trip_and_fresh_nonces() -> None:
    keyring: Sealer = Keyring.generate()
    sealed = keyring.seal(b"db-password")
    assert b"db-password" not in sealed
    assert keyring.unseal(sealed) == b"db-password"
    assert keyring.seal(b"db-password") != sealed  # a new random nonce every time
    assert keyring.unseal(keyring.seal(b"")) == b""


def test_format_is_version_key_id_nonce_ciphertext() -> None:
    keyring = Keyring({"k7": bytes(32)})
    sealed = keyring.seal(b"abc")
    assert sealed[0] == 1
    assert sealed[1] == 2
    assert sealed[2:4] == b"k7"
    assert len(sealed) == 4 + 12 + 3 + 16
    assert keyring.key_id_of(sealed) == "k7"


@pytest.mark.parametrize("position", [0, 1, 3, 5, 20, -1])
def test_any_changed_byte_is_detected(position: int) -> None:
    keyring = Keyring({"k7": bytes(32)})
    sealed = bytearray(keyring.seal(b"secret value"))
    sealed[position] ^= 0x01
    with pytest.raises(CryptoError):
        keyring.unseal(bytes(sealed))


def test_tampered_ciphertext_error_is_clear() -> None:
    keyring = Keyring.generate()
    sealed = bytearray(keyring.seal(b"secret value"))
    sealed[-1] ^= 0xFF
    with pytest.raises(CryptoError, match=r"failed authentication.*altered"):
        keyring.unseal(bytes(sealed))
    with pytest.raises(CryptoError, match="truncated"):
        keyring.unseal(bytes(sealed[:10]))
    with pytest.raises(CryptoError, match="not a sealed value"):
        keyring.unseal(b"plain text")


def test_rotation_seals_with_the_newest_and_opens_all() -> None:
    keyring = Keyring.generate()
    old = keyring.seal(b"old")
    new_id = keyring.rotate()
    assert new_id == "2"
    assert keyring.current_key_id == "2"
    assert keyring.key_ids == ["1", "2"]
    new = keyring.seal(b"new")
    assert keyring.key_id_of(new) == "2"
    assert keyring.key_id_of(old) == "1"
    assert keyring.unseal(old) == b"old"
    assert keyring.unseal(new) == b"new"


def test_unknown_key_id_is_a_clear_error() -> None:
    sealed = Keyring({"old": bytes(32)}).seal(b"x")
    with pytest.raises(CryptoError, match=r"sealed with key 'old'.*known: new"):
        Keyring({"new": bytes(32)}).unseal(sealed)


def test_keys_from_the_environment() -> None:
    single = Keyring.load_or_create(Path("/nonexistent"), {"PLAIT_SECRET_KEY": b64key(1)})
    assert single.key_ids == ["1"]
    several = Keyring.load_or_create(
        Path("/nonexistent"), {"PLAIT_SECRET_KEY": f"a:{b64key(1)}, b:{b64key(2)}"}
    )
    assert several.current_key_id == "b"
    sealed_by_a = Keyring({"a": bytes([1]) * 32}).seal(b"x")
    assert several.unseal(sealed_by_a) == b"x"
    with pytest.raises(CryptoError, match="PLAIT_SECRET_KEY"):
        several.rotate()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"short").decode(), "5 bytes; it must be 32"),
        (f"{b64key(1)},{b64key(2)}", "write each as id:base64"),
        (" , ", "holds no key"),
    ],
)
def test_bad_environment_keys(value: str, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        Keyring.load_or_create(Path("/nonexistent"), {"PLAIT_SECRET_KEY": value})


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = Keyring.load_or_create(home, {})
    path = home / "keys" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temp files left
    sealed = first.seal(b"kept")
    again = Keyring.load_or_create(home, {})
    assert again.unseal(sealed) == b"kept"


def test_rotation_is_saved_to_the_key_file(tmp_path: Path) -> None:
    keyring = Keyring.load_or_create(tmp_path, {})
    old = keyring.seal(b"old")
    keyring.rotate()
    path = tmp_path / "keys" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = Keyring.load_or_create(tmp_path, {})
    assert reloaded.key_ids == ["1", "2"]
    assert reloaded.current_key_id == "2"
    assert reloaded.unseal(old) == b"old"


def test_key_file_from_the_environment_and_a_loose_mode_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "custom.key"
    path.write_text(f"# plait keys\nprod:{b64key(9)}\n")
    os.chmod(path, 0o644)
    keyring = Keyring.load_or_create(tmp_path, {"PLAIT_SECRET_KEY_FILE": str(path)})
    assert keyring.key_ids == ["prod"]
    assert "accessible to other users" in caplog.text


def test_to_text_round_trips_through_the_environment_form() -> None:
    keyring = Keyring.generate()
    keyring.rotate()
    copy = Keyring.from_text(keyring.to_text())
    assert copy.key_ids == keyring.key_ids
    assert copy.unseal(keyring.seal(b"x")) == b"x"


def test_bad_key_ids_are_refused() -> None:
    with pytest.raises(CryptoError, match="not a key id"):
        Keyring({"a b": bytes(32)})
    with pytest.raises(CryptoError, match="AES-256 needs 32"):
        Keyring({"a": bytes(16)})
