"""Password hashing (argon2id) and the password policy.

Hashes are argon2id with parameters written out here rather than taken from the
library's defaults, so an upgrade of argon2-cffi can never silently change what new
hashes cost; :func:`needs_rehash` tells the login path when a stored hash was made with
older parameters, so it can be replaced while the plain password is at hand.

The policy follows NIST SP 800-63B: a minimum length and a block list of passwords
attackers try first, and no composition rules ("one digit, one symbol"), which push
users to ``Password1!`` without making guessing harder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
# Long enough for any passphrase or manager-generated password, short enough that a
# request cannot make the server hash megabytes.
MAX_LENGTH = 1024
# A username this short ("al") appears inside too many good passwords to be refused.
_MIN_USERNAME_IN_PASSWORD = 3


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """The cost of one hash; frozen and hashable so a hasher can be cached per value.

    The defaults are RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes):
    about 50 ms on a server core, affordable at login rates and costly to brute-force.
    """

    time_cost: int = 3
    memory_cost: int = 64 * 1024  # KiB
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16


DEFAULT_PARAMS = Argon2Params()


@lru_cache(maxsize=8)
def _hasher(params: Argon2Params) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=params.hash_len,
        salt_len=params.salt_len,
        type=Type.ID,
    )


@lru_cache(maxsize=8)
def _dummy_hash(params: Argon2Params) -> str:
    """A hash of nothing anyone knows, verified when the user does not exist."""
    return _hasher(params).hash("plait-dummy-password-for-timing")


def hash_password(password: str, params: Argon2Params = DEFAULT_PARAMS) -> str:
    """Hash ``password`` with a fresh random salt; the result encodes its parameters."""
    return _hasher(params).hash(password)


def verify_password(
    stored_hash: str | None, password: str, params: Argon2Params = DEFAULT_PARAMS
) -> bool:
    """True if ``password`` matches ``stored_hash``; never raises for a wrong password.

    Pass ``None`` when the user does not exist: a dummy hash is verified instead, so
    the answer takes as long as for a real user and response times do not reveal which
    usernames exist. A corrupt or foreign hash is treated as a mismatch (the login is
    refused) rather than an error that would surface as a 500.
    """
    if stored_hash is None:
        _verify_quietly(_dummy_hash(params), password, params)
        return False
    return _verify_quietly(stored_hash, password, params)


def _verify_quietly(stored_hash: str, password: str, params: Argon2Params) -> bool:
    try:
        return _hasher(params).verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        # VerifyMismatchError is a VerificationError; InvalidHashError covers hashes
        # that are not argon2 at all.
        return False


def needs_rehash(stored_hash: str, params: Argon2Params = DEFAULT_PARAMS) -> bool:
    """True if ``stored_hash`` was made with other parameters (or is not argon2id).

    Call after a successful login and store a new hash when it says so.
    """
    try:
        return _hasher(params).check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def check_password(password: str, username: str = "") -> list[str]:
    """Every reason ``password`` is refused, as messages for the user; empty if none.

    All problems are reported at once so a user fixes them in one go.
    """
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters long (it has {len(password)})")
    if len(password) > MAX_LENGTH:
        problems.append(f"must be at most {MAX_LENGTH} characters long")
    problems.extend(_username_problems(password, username))
    if _is_common(password):
        problems.append("is too common: it is on the list of passwords attackers try first")
    elif password and len(set(password)) == 1:
        problems.append("must not be a single character repeated")
    return problems


def _username_problems(password: str, username: str) -> list[str]:
    name = username.strip().casefold()
    if not name:
        return []
    folded = password.casefold()
    if folded == name:
        return ["must not be the same as the username"]
    if len(name) >= _MIN_USERNAME_IN_PASSWORD and name in folded:
        return ["must not contain the username"]
    return []


_TRAILING_DECORATION = re.compile(r"[\d\W_]+$")


def _is_common(password: str) -> bool:
    """True for a listed password, also with digits or symbols stuck on the end.

    ``iloveyou2024!`` is as weak as ``iloveyou``: guessing tools try every common word
    with a year or ``!`` appended first, so the decorated form is refused too.
    """
    folded = password.casefold()
    if folded in COMMON_PASSWORDS:
        return True
    stem = _TRAILING_DECORATION.sub("", folded)
    return bool(stem) and stem != folded and stem in COMMON_PASSWORDS


# The most common passwords from public breach corpora (SecLists top lists), including
# the long ones that pass the length rule; lower case, as matching is case-insensitive.
_COMMON_PASSWORD_TEXT = """
    123456 123456789 12345678 1234567890 12345 1234567 123123 111111 000000 654321
    123456789012 1234567890123 12345678910 123456789a 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y
    1qaz2wsx 1qaz2wsx3edc zaq12wsx qwerty qwerty123 qwertyuiop qwertyuiop123 qwerty123456
    asdfghjkl asdfghjkl123 zxcvbnm zxcvbnm123 qazwsx qazwsxedc abc123 abcdef abcdefgh
    abcdefghijkl abcd1234 a1b2c3d4 password password1 password12 password123 password1234
    password12345 passw0rd p@ssw0rd p@ssword passwordpassword mypassword secret secret123
    letmein letmein123 welcome welcome1 welcome123 welcome1234 changeme changeme123
    default administrator admin admin123 admin1234 adminadmin root toor guest iloveyou
    iloveyou123 princess sunshine football baseball basketball superman batman spiderman
    dragon monkey shadow master michael jennifer jordan hunter trustno1 starwars
    whatever freedom ninja mustang access login hello hello123 helloworld 696969
    computer internet samsung google liverpool chelsea arsenal pokemon naruto
    qwertyqwerty 11111111 111111111111 123123123 123123123123 987654321 9876543210
    1234qwer qwer1234 q1w2e3r4 q1w2e3r4t5 aa123456 123qwe 123qweasd 123qweasdzxc
    correcthorsebatterystaple thequickbrownfox letmeinplease opensesame
    plait plaitplait workflow
"""
COMMON_PASSWORDS: frozenset[str] = frozenset(_COMMON_PASSWORD_TEXT.split())
