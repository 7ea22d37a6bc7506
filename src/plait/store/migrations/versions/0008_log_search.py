"""Log search: full-text index of log lines (FTS5 on SQLite, tsvector on PostgreSQL).

SQLite: ``logs_fts``, an FTS5 table with *external content* — it indexes
``logs.line`` without keeping a second copy of the text; triggers keep it in step with
every insert, update and delete of ``logs`` (a run's deletion cascades to its lines and
so to the index). Lines already stored are indexed by a ``rebuild``. A SQLite build
without FTS5 (rare: Python's own builds and Debian's have it) gets no index, and log
search answers that it is not available there; everything else works.

PostgreSQL: a GIN index on the expression ``to_tsvector('simple', line)`` — no extra
column, so ``logs`` keeps the same columns on both databases. The ``simple``
configuration lower-cases words and neither stems them nor drops stop words: log lines
are identifiers, paths and messages in any language, where English stemming would
surprise.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 02:00:00.000000
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)

SQLITE_UP = (
    "CREATE VIRTUAL TABLE logs_fts USING fts5("
    "line, content='logs', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER logs_fts_insert AFTER INSERT ON logs BEGIN "
    "INSERT INTO logs_fts(rowid, line) VALUES (new.id, new.line); END",
    "CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN "
    "INSERT INTO logs_fts(logs_fts, rowid, line) VALUES ('delete', old.id, old.line); END",
    "CREATE TRIGGER logs_fts_update AFTER UPDATE OF line ON logs BEGIN "
    "INSERT INTO logs_fts(logs_fts, rowid, line) VALUES ('delete', old.id, old.line); "
    "INSERT INTO logs_fts(rowid, line) VALUES (new.id, new.line); END",
    "INSERT INTO logs_fts(logs_fts) VALUES ('rebuild')",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS logs_fts_update",
    "DROP TRIGGER IF EXISTS logs_fts_delete",
    "DROP TRIGGER IF EXISTS logs_fts_insert",
    "DROP TABLE IF EXISTS logs_fts",
)
POSTGRES_UP = (
    "CREATE INDEX IF NOT EXISTS ix_logs_line_search ON logs "
    "USING gin (to_tsvector('simple'::regconfig, line))",
)
POSTGRES_DOWN = ("DROP INDEX IF EXISTS ix_logs_line_search",)


def _has_fts5() -> bool:
    conn = op.get_bind()
    found = conn.exec_driver_sql("SELECT sqlite_compileoption_used('ENABLE_FTS5')").scalar()
    if found:
        return True
    try:  # some builds load it as an extension the option list does not name
        conn.exec_driver_sql("CREATE VIRTUAL TABLE temp.plait_fts5_probe USING fts5(x)")
        conn.exec_driver_sql("DROP TABLE temp.plait_fts5_probe")
    except Exception:
        return False
    return True


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        if not _has_fts5():
            log.warning("this SQLite has no FTS5: log search will scan the lines")
            return
        for statement in SQLITE_UP:
            op.execute(statement)
    elif dialect == "postgresql":
        for statement in POSTGRES_UP:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    statements = SQLITE_DOWN if dialect == "sqlite" else POSTGRES_DOWN
    if dialect in ("sqlite", "postgresql"):
        for statement in statements:
            op.execute(statement)
