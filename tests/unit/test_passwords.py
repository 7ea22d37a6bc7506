"""Password hashing and the password policy."""

from __future__ import annotations

import pytest

from plait.security.passwords import (
    DEFAULT_PARAMS,
    MAX_LENGTH,
    Argon2Params,
    check_password,
    hash_password,
    needs_rehash,
    verify_password,
)

# The cheapest parameters argon2 allows, so most tests take microseconds.
FAST = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


def test_default_hash_is_argon2id_with_explicit_parameters() -> None:
    stored = hash_password("a long enough passphrase")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, "a long enough passphrase")
    assert not verify_password(stored, "a long enough passphrasE")
    assert not needs_rehash(stored)


def test_round_trip_and_wrong_password() -> None:
    stored = hash_password("correct horse battery", FAST)
    assert verify_password(stored, "correct horse battery", FAST)
    assert not verify_password(stored, "correct horse battery ", FAST)
    assert not verify_password(stored, "", FAST)


def test_same_password_hashes_differently_each_time() -> None:
    assert hash_password("same password here", FAST) != hash_password("same password here", FAST)


def test_unicode_passwords_round_trip() -> None:
    stored = hash_password("pässwörd-日本語-🔑", FAST)
    assert verify_password(stored, "pässwörd-日本語-🔑", FAST)
    assert not verify_password(stored, "passwort-日本語-🔑", FAST)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "not a hash",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "$argon2id$v=19$m=8,t=1,p=1$broken",
    ],
)
def test_foreign_or_corrupt_hash_is_a_mismatch_not_an_error(stored: str) -> None:
    assert verify_password(stored, "whatever password", FAST) is False
    assert needs_rehash(stored, FAST)


def test_missing_user_is_refused_after_verifying_a_dummy_hash() -> None:
    assert verify_password(None, "plait-dummy-password-for-timing", FAST) is False
    assert verify_password(None, "anything at all", FAST) is False


def test_needs_rehash_when_parameters_change() -> None:
    old = hash_password("an old password hash", FAST)
    assert not needs_rehash(old, FAST)
    assert needs_rehash(old, DEFAULT_PARAMS)
    assert needs_rehash(old, Argon2Params(time_cost=2, memory_cost=8, parallelism=1))


def test_argon2i_hash_needs_rehash_to_argon2id() -> None:
    from argon2 import PasswordHasher, Type

    legacy = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash("pw")
    assert verify_password(legacy, "pw", FAST)
    assert needs_rehash(legacy, FAST)


# --- policy --------------------------------------------------------------------------


def test_good_password_has_no_problems() -> None:
    assert check_password("violet staircase umbrella", "alice") == []
    assert check_password("x" * 11 + "y", "") == []


def test_too_short_says_how_long_it_is() -> None:
    assert check_password("Tr0ub4dor&3", "alice") == [
        "must be at least 12 characters long (it has 11)"
    ]


def test_twelve_characters_is_enough() -> None:
    assert check_password("kx9!vq2#mz7w", "alice") == []


def test_too_long() -> None:
    assert check_password("ab" * (MAX_LENGTH // 2) + "c", "alice") == [
        f"must be at most {MAX_LENGTH} characters long"
    ]


def test_equal_to_username_any_case() -> None:
    assert check_password("JDoe-Operator", "jdoe-operator") == [
        "must not be the same as the username"
    ]


def test_containing_username() -> None:
    assert check_password("my-name-is-ALICE-ok", "alice") == ["must not contain the username"]


def test_very_short_username_is_not_searched_for() -> None:
    assert check_password("a very good passphrase", "al") == []


@pytest.mark.parametrize(
    "password",
    ["password1234", "PASSWORD1234", "qwertyuiop123", "123456789012", "passwordpassword"],
)
def test_common_passwords_refused(password: str) -> None:
    assert check_password(password, "alice") == [
        "is too common: it is on the list of passwords attackers try first"
    ]


@pytest.mark.parametrize("password", ["iloveyou2024!!", "Welcome!!!!!!", "letmein_123456"])
def test_common_word_with_decoration_refused(password: str) -> None:
    assert any("too common" in p for p in check_password(password, "bob"))


def test_common_word_inside_a_longer_phrase_is_fine() -> None:
    assert check_password("password manager generated", "bob") == []


def test_repeated_single_character_refused() -> None:
    assert check_password("zzzzzzzzzzzzzz", "bob") == ["must not be a single character repeated"]


def test_all_problems_reported_at_once() -> None:
    problems = check_password("bob", "bob")
    assert problems == [
        "must be at least 12 characters long (it has 3)",
        "must not be the same as the username",
    ]


def test_empty_password() -> None:
    assert check_password("", "bob") == ["must be at least 12 characters long (it has 0)"]
