"""The PostgreSQL pool settings from the environment, and the backoff of retrying loops."""

from __future__ import annotations

import pytest

from plait.errors import StoreError
from plait.runtime.backoff import Backoff
from plait.store.dialects import POOL_SETTINGS, pool_settings


def test_defaults_without_variables() -> None:
    found = pool_settings({})
    assert found == {name: default for name, (default, _) in POOL_SETTINGS.items()}


def test_variables_set_the_pool() -> None:
    found = pool_settings({"PLAIT_DB_POOL_SIZE": "3", "PLAIT_DB_POOL_TIMEOUT": "2.5"})
    assert found["PLAIT_DB_POOL_SIZE"] == 3
    assert found["PLAIT_DB_POOL_TIMEOUT"] == 2.5
    assert found["PLAIT_DB_MAX_OVERFLOW"] == POOL_SETTINGS["PLAIT_DB_MAX_OVERFLOW"][0]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PLAIT_DB_POOL_SIZE", "0"),
        ("PLAIT_DB_POOL_SIZE", "many"),
        ("PLAIT_DB_MAX_OVERFLOW", "-1"),
        ("PLAIT_DB_POOL_TIMEOUT", "nan"),
        ("PLAIT_DB_CONNECT_TIMEOUT", "inf"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(StoreError, match=f"{name}='{value}'"):
        pool_settings({name: value})


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    delays = [backoff.failed() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling  # jittered between half and all of it
    assert backoff.succeeded() is True
    assert backoff.succeeded() is False
    assert backoff.failed() <= 1.0
