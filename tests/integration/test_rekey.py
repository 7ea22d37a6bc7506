"""Key rotation on real databases: every sealed value moves to the new key, stays
readable, an interrupted rotation continues, and old keys retire only when unused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from plait.engine.state import RunState, RunStatus, StepState, StepStatus
from plait.security.crypto import Keyring
from plait.store import rekey
from plait.store.migrate import open_store
from plait.store.rekey import RekeyError, ReloadingKeyring, key_usage, reseal, retire_old_keys
from plait.store.server import ServerStore
from plait.store.sql import SqlStore

RUNS = 7  # more than one batch of 3


def fill(store: SqlStore) -> None:
    """Runs with sealed inputs, steps with sealed outputs, and secrets."""
    for i in range(RUNS):
        run = RunState(
            id=f"r{i}",
            workflow="deploy",
            status=RunStatus.SUCCEEDED,
            inputs={"pw": "***"},
            sealed_inputs={"pw": f"hunter{i}"},
            created_at=float(i),
        )
        step = StepState("a", "a", StepStatus.SUCCEEDED, sealed_outputs={"t": f"tok{i}"})
        empty = StepState("b", "b", StepStatus.SUCCEEDED, sealed_outputs={})
        store.create_run(run, [step, empty], [])
    secrets = ServerStore(store)
    for i in range(RUNS):
        secrets.put_secret("ops", f"S{i}", f"value{i}", "test")


def key_ids(store: SqlStore, keyring: Keyring) -> set[str]:
    """The key id of every non-empty sealed value in the database, by plain SQL."""
    found: set[str] = set()
    with store.engine.connect() as conn:
        for table, column in (
            ("runs", "sealed_inputs"),
            ("steps", "sealed_outputs"),
            ("secrets", "sealed_value"),
        ):
            for (blob,) in conn.execute(sa.text(f"SELECT {column} FROM {table}")):
                if blob:
                    found.add(keyring.key_id_of(bytes(blob)))
    return found


def values(store: SqlStore) -> tuple[list[Any], list[Any], dict[str, str]]:
    runs = [store.load_run(f"r{i}") for i in range(RUNS)]
    secrets = ServerStore(store).secret_values("ops", [f"S{i}" for i in range(RUNS)])
    return (
        [s.run.sealed_inputs for s in runs],
        [[step.sealed_outputs for step in s.steps] for s in runs],
        secrets,
    )


def test_every_sealed_column_is_found(url: str, keyring: Keyring) -> None:
    store = open_store(url, keyring)
    try:
        names = {c.name for c in rekey.sealed_columns(store)}
    finally:
        store.close()
    assert {"runs.sealed_inputs", "steps.sealed_outputs", "secrets.sealed_value"} <= names


def test_rotation_reseals_everything_and_values_still_open(url: str, keyring: Keyring) -> None:
    store = open_store(url, keyring)
    try:
        fill(store)
        before = values(store)
        assert key_ids(store, keyring) == {"1"}
        new_id = keyring.rotate()
        report = reseal(store, keyring, batch=3)
        assert key_ids(store, keyring) == {new_id}
        assert report.resealed == 4 * RUNS  # runs, two steps each, secrets
        assert report.remaining == 0
        assert not report.failed
        assert values(store) == before
        # Running it again finds nothing to do.
        assert reseal(store, keyring, batch=3).resealed == 0
    finally:
        store.close()
    # A fresh process, with the key file, opens every value.
    assert keyring.path is not None
    reopened = open_store(url, Keyring.from_file(keyring.path))
    try:
        assert values(reopened) == before
    finally:
        reopened.close()


def test_interrupted_rotation_continues(
    url: str, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(url, keyring)
    try:
        fill(store)
        before = values(store)
        new_id = keyring.rotate()
        real = rekey._write_back
        calls = 0

        def crash_after_two(*args: Any) -> int:
            nonlocal calls
            calls += 1
            if calls > 2:
                raise KeyboardInterrupt
            return real(*args)

        monkeypatch.setattr(rekey, "_write_back", crash_after_two)
        with pytest.raises(KeyboardInterrupt):
            reseal(store, keyring, batch=3)
        monkeypatch.setattr(rekey, "_write_back", real)
        assert key_ids(store, keyring) == {"1", new_id}  # half done
        assert values(store) == before  # and every value readable meanwhile
        report = reseal(store, keyring, batch=3)
        assert report.resealed == 4 * RUNS - 6
        assert key_ids(store, keyring) == {new_id}
        assert values(store) == before
    finally:
        store.close()


def test_a_value_rewritten_meanwhile_is_not_overwritten(url: str, keyring: Keyring) -> None:
    store = open_store(url, keyring)
    try:
        fill(store)
        keyring.rotate()
        secrets = ServerStore(store)
        real = rekey._write_back

        def race(store_: SqlStore, sc: Any, updates: Any) -> int:
            if sc.name == "secrets.sealed_value":  # a user replaces S0 before the write
                secrets.put_secret("ops", "S0", "newer", "someone")
            return real(store_, sc, updates)

        rekey._write_back = race  # type: ignore[assignment]
        try:
            report = reseal(store, keyring, batch=100)
        finally:
            rekey._write_back = real
        assert report.columns["secrets.sealed_value"].changed_meanwhile == 1
        assert secrets.secret_values("ops", ["S0"]) == {"S0": "newer"}
        assert report.remaining == 0  # the new value was sealed with the new key
    finally:
        store.close()


def test_retire_refuses_while_an_old_value_remains(url: str, keyring: Keyring) -> None:
    store = open_store(url, keyring)
    try:
        fill(store)
        new_id = keyring.rotate()
        with pytest.raises(RekeyError, match="key 1: 28 value"):
            retire_old_keys(store, keyring)
        assert keyring.path is not None
        assert Keyring.from_file(keyring.path).key_ids == ["1", new_id]
        reseal(store, keyring)
        assert retire_old_keys(store, keyring) == ["1"]
        assert Keyring.from_file(keyring.path).key_ids == [new_id]
        retired = list(keyring.path.parent.glob("secret.key.retired-*"))
        assert len(retired) == 1
        assert Keyring.from_file(retired[0]).key_ids == ["1"]
        assert key_usage(store, keyring)["secrets.sealed_value"] == {new_id: RUNS}
    finally:
        store.close()


def test_env_keys_are_not_retired_here(url: str) -> None:
    keyring = Keyring.load_or_create(
        Path("/nonexistent"), environ={"PLAIT_SECRET_KEY": "A" * 43 + "="}
    )
    store = open_store(url, keyring)
    try:
        with pytest.raises(RekeyError, match="PLAIT_SECRET_KEY"):
            retire_old_keys(store, keyring)
    finally:
        store.close()


def test_a_running_process_learns_the_new_key_without_restart(
    url: str, keyring: Keyring, tmp_path: Path
) -> None:
    """The worker's keyring predates the rotation; it still opens re-sealed values and
    starts sealing with the new key."""
    assert keyring.path is not None
    worker_keys = ReloadingKeyring.from_file(keyring.path)
    assert isinstance(worker_keys, ReloadingKeyring)
    worker_keys.interval = 0.0
    worker = open_store(url, worker_keys)
    operator = open_store(url, keyring)
    try:
        fill(operator)
        new_id = keyring.rotate()
        reseal(operator, keyring)
        assert values(worker) == values(operator)
        assert worker_keys.current_key_id == new_id
        ServerStore(worker).put_secret("ops", "LATER", "x", "w")
        assert key_ids(operator, keyring) == {new_id}
    finally:
        worker.close()
        operator.close()
