"""TOTP against the RFC 6238 test vectors, replay refusal, and recovery codes."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qs, urlparse

import pytest

from plait.security.totp import (
    check_recovery,
    code_at,
    hash_recovery_code,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    step_at,
    verify,
)

SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
# RFC 6238 Appendix B.
VECTORS = [
    (59, "94287082", "sha1"),
    (59, "46119246", "sha256"),
    (59, "90693936", "sha512"),
    (1111111109, "07081804", "sha1"),
    (1111111109, "68084774", "sha256"),
    (1111111109, "25091201", "sha512"),
    (1111111111, "14050471", "sha1"),
    (1111111111, "67062674", "sha256"),
    (1111111111, "99943326", "sha512"),
    (1234567890, "89005924", "sha1"),
    (1234567890, "91819424", "sha256"),
    (1234567890, "93441116", "sha512"),
    (2000000000, "69279037", "sha1"),
    (2000000000, "90698825", "sha256"),
    (2000000000, "38618901", "sha512"),
    (20000000000, "65353130", "sha1"),
    (20000000000, "77737706", "sha256"),
    (20000000000, "47863826", "sha512"),
]
SHA1_SECRET = base64.b32encode(SEEDS["sha1"]).decode()


def b32(seed: bytes) -> str:
    return base64.b32encode(seed).decode()


@pytest.mark.parametrize(("now", "expected", "algorithm"), VECTORS)
def test_rfc6238_vectors(now: int, expected: str, algorithm: str) -> None:
    assert code_at(b32(SEEDS[algorithm]), now, digits=8, algorithm=algorithm) == expected


@pytest.mark.parametrize(("now", "expected"), [(n, c) for n, c, a in VECTORS if a == "sha1"])
def test_verify_accepts_the_six_digit_rfc_code(now: int, expected: str) -> None:
    assert verify(SHA1_SECRET, expected[-6:], now) == now // 30


def test_step_at() -> None:
    assert step_at(59) == 1
    assert step_at(60) == 2
    assert step_at(1111111109) == 0x23523EC


def test_new_secret_is_160_bit_base32() -> None:
    secret = new_secret()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert len(base64.b32decode(secret)) == 20
    assert new_secret() != secret


def test_provisioning_uri() -> None:
    uri = provisioning_uri(SHA1_SECRET, "alice@example.com")
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth"
    assert parsed.netloc == "totp"
    assert parsed.path == "/Plait:alice%40example.com"
    query = parse_qs(parsed.query)
    assert query["secret"] == [SHA1_SECRET]
    assert query["issuer"] == ["Plait"]


def test_provisioning_uri_custom_issuer() -> None:
    uri = provisioning_uri(SHA1_SECRET, "bob", issuer="Plait Staging")
    assert uri.startswith("otpauth://totp/Plait%20Staging:bob?")
    assert "issuer=Plait%20Staging" in uri


# --- verify: window and replay -------------------------------------------------------

NOW = 1_700_000_015  # mid-step


def test_current_code_accepted_and_step_returned() -> None:
    code = code_at(SHA1_SECRET, NOW)
    assert verify(SHA1_SECRET, code, NOW) == NOW // 30


def test_window_of_one_step_either_side() -> None:
    previous = code_at(SHA1_SECRET, NOW - 30)
    following = code_at(SHA1_SECRET, NOW + 30)
    assert verify(SHA1_SECRET, previous, NOW) == NOW // 30 - 1
    assert verify(SHA1_SECRET, following, NOW) == NOW // 30 + 1
    assert verify(SHA1_SECRET, code_at(SHA1_SECRET, NOW - 60), NOW) is None
    assert verify(SHA1_SECRET, code_at(SHA1_SECRET, NOW + 60), NOW) is None


def test_window_zero_accepts_only_the_current_step() -> None:
    assert verify(SHA1_SECRET, code_at(SHA1_SECRET, NOW - 30), NOW, window=0) is None
    assert verify(SHA1_SECRET, code_at(SHA1_SECRET, NOW), NOW, window=0) == NOW // 30


def test_wider_window() -> None:
    assert verify(SHA1_SECRET, code_at(SHA1_SECRET, NOW - 60), NOW, window=2) == NOW // 30 - 2


def test_negative_window_refused() -> None:
    with pytest.raises(ValueError):
        verify(SHA1_SECRET, "123456", NOW, window=-1)


def test_replay_of_the_same_code_refused() -> None:
    code = code_at(SHA1_SECRET, NOW)
    step = verify(SHA1_SECRET, code, NOW)
    assert step is not None
    assert verify(SHA1_SECRET, code, NOW + 5, last_used_step=step) is None


def test_older_code_refused_after_a_newer_one_was_used() -> None:
    current = NOW // 30
    older = code_at(SHA1_SECRET, NOW - 30)
    assert verify(SHA1_SECRET, older, NOW, last_used_step=current) is None


def test_next_code_accepted_after_a_used_one() -> None:
    step = NOW // 30
    assert verify(SHA1_SECRET, code_at(SHA1_SECRET, NOW + 30), NOW + 30, last_used_step=step) == (
        step + 1
    )


def test_wrong_secret_refused() -> None:
    assert verify(new_secret(), code_at(SHA1_SECRET, NOW), NOW) is None


def test_spaces_are_ignored() -> None:
    code = code_at(SHA1_SECRET, NOW)
    assert verify(SHA1_SECRET, f" {code[:3]} {code[3:]} ", NOW) == NOW // 30


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12345x"])
def test_malformed_codes_refused(code: str) -> None:
    assert verify(SHA1_SECRET, code, NOW) is None


def test_near_epoch_does_not_use_negative_steps() -> None:
    assert verify(SHA1_SECRET, code_at(SHA1_SECRET, 0), 10) == 0


# --- recovery codes ------------------------------------------------------------------


def test_recovery_codes_shape() -> None:
    codes, hashes = new_recovery_codes()
    assert len(codes) == len(hashes) == 10
    for code in codes:
        assert re.fullmatch(r"[2-9A-HJKMNP-Z]{4}(-[2-9A-HJKMNP-Z]{4}){3}", code), code
    assert len(set(codes)) == 10
    assert hashes == [hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes]


def test_recovery_code_count() -> None:
    assert len(new_recovery_codes(3)[0]) == 3


def test_check_recovery_finds_the_index() -> None:
    codes, hashes = new_recovery_codes(5)
    for index, code in enumerate(codes):
        assert check_recovery(code, hashes) == index


def test_recovery_code_typed_loosely() -> None:
    codes, hashes = new_recovery_codes(2)
    typed = codes[1].lower().replace("-", " ")
    assert check_recovery(typed, hashes) == 1
    assert hash_recovery_code(typed) == hashes[1]


def test_unknown_recovery_code_refused() -> None:
    _, hashes = new_recovery_codes()
    assert check_recovery("AAAA-BBBB-CCCC-DDDD", hashes) is None
    assert check_recovery("", hashes) is None


def test_used_recovery_code_refused_once_its_hash_is_removed() -> None:
    codes, hashes = new_recovery_codes(3)
    index = check_recovery(codes[0], hashes)
    assert index == 0
    hashes[index] = ""  # what the store does once the code is used
    assert check_recovery(codes[0], hashes) is None
    assert check_recovery(codes[1], hashes) == 1


def test_recovery_against_other_users_hashes_refused() -> None:
    codes, _ = new_recovery_codes(3)
    _, others = new_recovery_codes(3)
    assert all(check_recovery(c, others) is None for c in codes)
