"""The SQLite store without SQLAlchemy: kept statements, converters and start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plait.store import _sqlite_statements as kept
from plait.store.lite import LiteHooks, lite_target, open_lite, write_kept
from plait.store.migrate import HEAD, open_store
from plait.store.prepared import BIND_KINDS, RESULT_KINDS

ROOT = Path(__file__).resolve().parents[2]


def test_kept_statements_match_a_fresh_compilation() -> None:
    """Fails when a table or statement changed without `python -m plait.store.lite`."""
    namespace: dict[str, Any] = {}
    exec(compile(write_kept(), "fresh", "exec"), namespace)
    assert kept.REVISION == HEAD == namespace["REVISION"]
    assert namespace["STATEMENTS"] == kept.STATEMENTS, (
        "the kept SQLite statements are stale: run `python -m plait.store.lite`"
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [({"a": [1, "x"]}, "json"), ([], "json"), ("text", "json"), (3, "json"), (True, "bool"),
     (False, "bool"), (0, "bool"), (1.5, "float"), (2, "float"), (b"\x00\x01", "binary")],
)  # fmt: skip
def test_kept_converters_do_what_sqlalchemys_do(value: Any, kind: str) -> None:
    from sqlalchemy import JSON, Boolean, Double, LargeBinary, create_engine

    dialect = create_engine("sqlite://").dialect  # with its driver, as a store has it
    type_ = {"json": JSON(), "bool": Boolean(), "float": Double(), "binary": LargeBinary()}[kind]
    sa_bind = type_.dialect_impl(dialect).bind_processor(dialect)
    assert sa_bind is not None
    ours = BIND_KINDS[kind](value)
    theirs = sa_bind(value)
    assert type(ours) is type(theirs)
    assert (bytes(ours) if kind == "binary" else ours) == (
        bytes(theirs) if kind == "binary" else theirs
    )
    sa_result = type_.dialect_impl(dialect).result_processor(dialect, None)
    if kind in RESULT_KINDS:
        assert sa_result is not None
        stored = int(ours) if kind == "bool" else ours
        assert RESULT_KINDS[kind](stored) == sa_result(stored)


def test_the_bool_converter_refuses_what_sqlalchemy_refuses() -> None:
    with pytest.raises(TypeError):
        BIND_KINDS["bool"]("yes")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("sqlite:///tmp/x.db", True),
        ("sqlite:////tmp/x.db?synchronous=full", True),
        ("sqlite+pysqlite:///x.db", True),
        ("sqlite://", False),
        ("sqlite:///:memory:", False),
        ("sqlite:///x.db?mode=ro", False),
        ("sqlite:///x.db?synchronous=sometimes", False),
        ("postgresql+psycopg://u@h/db", False),
    ],
)
def test_only_plain_sqlite_files_take_the_lite_path(url: str, ok: bool) -> None:
    assert (lite_target(url) is not None) is ok


def test_a_new_database_is_migrated_then_opened_lite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/plait.db"
    assert open_lite(url) is None  # no file yet: it must be created and migrated
    store = open_store(url, lite=True)
    assert isinstance(store._hooks, LiteHooks)
    store.close()
    server = open_store(url)  # a server keeps SQLAlchemy's pooled hooks
    assert not isinstance(server._hooks, LiteHooks)
    server.close()


def test_an_old_schema_is_not_opened_lite(tmp_path: Path) -> None:
    from plait.store.migrate import downgrade

    url = f"sqlite:///{tmp_path}/plait.db"
    open_store(url).close()
    downgrade(url)
    assert open_lite(url) is None
    store = open_store(url, lite=True)  # upgraded first, then lite
    assert isinstance(store._hooks, LiteHooks)
    store.close()


def test_the_lite_store_reaches_sqlalchemy_only_when_asked(tmp_path: Path) -> None:
    from plait.store.base import RunFilter

    url = f"sqlite:///{tmp_path}/plait.db"
    store = open_store(url, lite=True)
    try:
        assert store.list_runs(RunFilter(), None, 10).items == []  # a per-call query
        assert store.engine.dialect.name == "sqlite"
    finally:
        store.close()


def test_plait_run_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    """The point of the lite path: the one-step `plait run` start-up target."""
    wf = tmp_path / "one.yaml"
    wf.write_text("name: one\nsteps:\n  - id: a\n    run: 'true'\n")
    env = {**os.environ, "PLAIT_HOME": str(tmp_path / "home")}
    probe = (
        "import sys, json, atexit\n"
        "atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in "
        "sys.modules})), file=sys.stderr))\n"
        "from plait.cli import main\n"
        "sys.argv = ['plait', 'run', sys.argv[1], '--quiet', '--results-dir', sys.argv[2]]\n"
        "main()\n"
    )
    argv = [sys.executable, "-c", probe, str(wf), str(tmp_path / "res")]
    subprocess.run(argv, env=env, check=True, capture_output=True)  # creates the store
    done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    modules = json.loads(done.stderr.strip().splitlines()[-1])
    # (rich draws progress on a terminal only; cryptography seals secrets when one is)
    for heavy in ("sqlalchemy", "alembic", "fastapi", "uvicorn", "httpx", "rich", "cryptography"):
        assert heavy not in modules, f"`plait run` imported {heavy}"
