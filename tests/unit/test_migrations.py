"""The HEAD constant follows the real Alembic head, and checking it needs no Alembic."""

from __future__ import annotations

import subprocess
import sys

from plait.store import migrate


def test_head_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "plait.store:migrations")
    assert ScriptDirectory.from_config(cfg).get_heads() == [migrate.HEAD]


def test_checking_the_schema_does_not_import_alembic() -> None:
    code = (
        "import sys; from plait.store.migrate import is_current; "
        "is_current('sqlite://'); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
