#!/usr/bin/env python3
"""Plan the SQL migrations the db-migration recipe applies (standard library only).

Migrations are files ``NNNN_name.sql`` in one directory, in dbmate's format::

    -- migrate:up
    ALTER TABLE users ADD COLUMN email TEXT;
    CREATE INDEX ix_users_email ON users (email);
    -- migrate:down
    DROP INDEX ix_users_email;
    ALTER TABLE users DROP COLUMN email;

``plan`` prints, as ``key=value`` lines for ``$PLAIT_OUTPUT``, the migrations after the
database's current version (up to ``--target``), each with the script that applies it
and the one that reverts it. Each script ends with its bookkeeping statement on
``schema_migrations``, so on PostgreSQL — where DDL is transactional and one ``sql``
step runs a script in one transaction — a migration and its record commit or roll back
together; and each starts with a guard that fails when the migration before it is not
recorded, so nothing runs after a failed one.

    migrations.py plan migrations --after 1 --run "$RUN_ID"
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

FILE = re.compile(r"^(\d+)_([a-z0-9_]+)\.sql$")
RUN_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def parse(path: Path) -> tuple[str, str]:
    """The up and down parts of one migration file."""
    text = path.read_text()
    up, sep, down = text.partition("-- migrate:down")
    if "-- migrate:up" not in up:
        sys.exit(f"{path}: no '-- migrate:up' line")
    up = up.split("-- migrate:up", 1)[1].strip().rstrip(";")
    if not up:
        sys.exit(f"{path}: the up part is empty")
    return up, down.strip().rstrip(";") if sep else ""


def guard(previous: int, version: int) -> str:
    """A PostgreSQL block that refuses to run a migration whose predecessor is not
    recorded: the items of a for_each all run even after one fails, and this makes
    the ones after a failed migration fail at once, changing nothing."""
    if previous == 0:
        return ""
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM schema_migrations WHERE version = "
        f"{previous}) THEN RAISE EXCEPTION 'migration {previous} is not applied: not "
        f"running {version}'; END IF; END $$;\n"
    )


def plan(directory: Path, after: int, target: int | None, run: str) -> list[dict[str, object]]:
    if not RUN_ID.match(run):
        sys.exit(f"--run {run!r}: not a run id")
    found: list[dict[str, object]] = []
    previous = after
    for path in sorted(directory.glob("*.sql")):
        match = FILE.match(path.name)
        if not match:
            sys.exit(f"{path}: name it NNNN_name.sql (digits, then lower-case words)")
        version, name = int(match[1]), match[2]
        if version <= after or (target is not None and version > target):
            continue
        up, down = parse(path)
        found.append(
            {
                "version": version,
                "name": name,
                "apply": guard(previous, version)
                + f"{up};\nINSERT INTO schema_migrations (version, name, applied_at, "
                f"run_id) VALUES ({version}, '{name}', CURRENT_TIMESTAMP, '{run}')",
                "revert": f"{down};\nDELETE FROM schema_migrations WHERE version = {version}"
                if down
                else "",
            }
        )
        previous = version
    versions = [m["version"] for m in found]
    if len(set(versions)) != len(versions):
        sys.exit(f"two migrations share a version number in {directory}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="the migrations to apply, as key=value lines")
    p.add_argument("directory", type=Path)
    p.add_argument("--after", type=int, required=True, help="the database's current version")
    p.add_argument("--target", type=int, default=None, help="stop at this version")
    p.add_argument("--run", required=True, help="the run id, recorded with each migration")
    args = parser.parse_args()
    if not args.directory.is_dir():
        sys.exit(f"no migrations directory {args.directory}")
    pending = plan(args.directory, args.after, args.target, args.run)
    for m in pending:
        print(f"pending: {m['version']:04d}_{m['name']}", file=sys.stderr)
    latest = pending[-1]["version"] if pending else args.after
    print(f"pending={json.dumps(pending)}")
    print(f"count={len(pending)}")
    print(f"latest={latest}")


if __name__ == "__main__":
    main()
