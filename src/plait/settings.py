"""Where Plait keeps its state, read from the environment once by the entry points.

``PLAIT_HOME`` (default ``~/.plait``) holds the embedded SQLite database, keys and logs;
``PLAIT_DATABASE_URL`` points at another store (``postgresql+psycopg://…``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> Settings:
        root = Path(home or os.environ.get("PLAIT_HOME") or Path.home() / ".plait").expanduser()
        url = os.environ.get("PLAIT_DATABASE_URL") or f"sqlite:///{root / 'plait.db'}"
        return cls(home=root, database_url=url)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"


def env_secrets(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Secrets given as ``PLAIT_SECRET_<NAME>`` variables, by ``<NAME>`` as written.

    ``secrets.deploy_key`` and ``secrets.DEPLOY_KEY`` both find ``PLAIT_SECRET_DEPLOY_KEY``:
    the lower-case alias is added so a workflow need not shout.
    """
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for key, value in env.items():
        if key.startswith("PLAIT_SECRET_") and key != "PLAIT_SECRET_KEY" and value:
            name = key.removeprefix("PLAIT_SECRET_")
            found[name] = value
            found.setdefault(name.lower(), value)
    return found
