"""The key checks of ``plait doctor``: the key that seals secrets at rest and the one
that signs access tokens are present, private to their owner, and — for the secret
key — really open the values the store holds (a different key under the same id is
caught by trying one value per column)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.ops.doctor import Finding

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from plait.ops.doctor import Context
    from plait.security.crypto import Keyring


def private_problem(path: Path) -> str | None:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def secret_key(ctx: Context) -> Finding:
    from plait.security.crypto import ENV_VAR, KEY_FILE_ENV_VAR, CryptoError, Keyring

    name = "secret key"
    if ctx.environ.get(ENV_VAR, "").strip():
        try:
            keyring = Keyring.from_text(ctx.environ[ENV_VAR])
        except CryptoError as exc:
            return Finding(name, "fail", str(exc), f"fix {ENV_VAR} (id:base64 pairs)")
        return _keyring_opens(ctx, keyring, ENV_VAR)
    path = Path(ctx.environ.get(KEY_FILE_ENV_VAR) or ctx.settings.keys_dir / "secret.key")
    if not path.exists():
        sealed = _sealed_count(ctx)
        if sealed:
            return Finding(
                name,
                "fail",
                f"{path} is missing, and the store holds {sealed} "
                "sealed value(s) that only it opens",
                f"restore {path} from a backup, or set {ENV_VAR}",
            )
        return Finding(
            name,
            "warn",
            f"no key at {path} yet",
            "the first `plait serve`, `plait run` or `plait secrets set` creates it",
        )
    problem = private_problem(path)
    if problem:
        return Finding(name, "fail", problem, f"chmod 600 {path}")
    try:
        keyring = Keyring.from_text(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, CryptoError) as exc:
        return Finding(name, "fail", f"cannot read {path}: {exc}", f"restore {path} from a backup")
    found = _keyring_opens(ctx, keyring, str(path))
    keys_dir = path.parent
    if found.status == "ok" and keys_dir.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Finding(
            name,
            "warn",
            f"{found.message}; but {keys_dir} is open to other users",
            f"chmod 700 {keys_dir}",
        )
    if found.status == "ok" and path.stat().st_uid != os.geteuid():
        return Finding(
            name,
            "warn",
            f"{found.message}; but {path} belongs to another user",
            f"run plait as the user that owns {path}",
        )
    return found


def _sealed_count(ctx: Context) -> int:
    if ctx.store is None:
        return 0
    from sqlalchemy import func, select

    from plait.store.rekey import sealed_columns

    total = 0
    with ctx.store._hooks.read() as conn:
        for sc in sealed_columns(ctx.store):
            where = sc.column.is_not(None) & (func.length(sc.column) > 0)
            total += int(conn.execute(select(func.count()).where(where)).scalar_one())
    return total


def _keyring_opens(ctx: Context, keyring: Keyring, source: str) -> Finding:
    """The keyring has every key the store's values name, and really opens them (one
    value per column is tried: a different key under the same id fails there)."""
    from plait.security.crypto import CryptoError
    from plait.store.rekey import key_usage, sealed_columns

    name = "secret key"
    described = f"{len(keyring.key_ids)} key(s) from {source}, key {keyring.current_key_id} seals"
    if ctx.store is None:
        return Finding(name, "ok", described)
    usage = key_usage(ctx.store, keyring)
    unknown = sum(counts.get("?", 0) for counts in usage.values())
    if unknown:
        return Finding(
            name,
            "fail",
            f"{unknown} sealed value(s) are under keys that {source} does not have",
            "restore the old key file (or add the "
            "missing id:key pairs), then `plait secrets rotate-key --reseal-only`",
        )
    with ctx.store._hooks.read() as conn:
        for sc in sealed_columns(ctx.store):
            value = _first_sealed(conn, sc.column)
            if value is None:
                continue
            try:
                keyring.unseal(bytes(value))
            except CryptoError as exc:
                return Finding(
                    name,
                    "fail",
                    f"{sc.name}: {exc}",
                    "use the key file these values were sealed with",
                )
    sealed = sum(sum(counts.values()) for counts in usage.values())
    return Finding(name, "ok", f"{described}; opens the store's {sealed} sealed value(s)")


def _first_sealed(conn: Connection, column: Any) -> Any:
    from sqlalchemy import func, select

    where = column.is_not(None) & (func.length(column) > 0)
    return conn.execute(select(column).where(where).limit(1)).scalar()


def token_key(ctx: Context) -> Finding:
    name = "token key"
    given = ctx.environ.get("PLAIT_JWT_SECRET", "")
    if given:
        if len(given) < 32:
            return Finding(
                name,
                "warn",
                f"PLAIT_JWT_SECRET has {len(given)} characters",
                "use at least 32 random characters: `openssl rand -base64 48`",
            )
        return Finding(name, "ok", "from PLAIT_JWT_SECRET")
    path = ctx.settings.keys_dir / "jwt.key"
    shared = "" if ctx.sqlite else "; every `plait api` must sign with the same key"
    if not path.exists():
        return Finding(
            name,
            "warn",
            f"no {path} yet{shared}",
            "set PLAIT_JWT_SECRET, or let the first server start create it",
        )
    problem = private_problem(path)
    if problem:
        return Finding(name, "fail", problem, f"chmod 600 {path}")
    if not ctx.sqlite:
        return Finding(
            name,
            "warn",
            f"from {path}{shared}",
            "set the same PLAIT_JWT_SECRET on every API process",
        )
    return Finding(name, "ok", f"from {path}")


__all__ = ["private_problem", "secret_key", "token_key"]
