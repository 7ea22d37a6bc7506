"""``uses: git`` — clone, fetch, pull, check out, commit, tag and push with the git CLI.

The ``git`` command runs as an asyncio subprocess (never through a shell) in its own
process group, so a timeout or cancel also stops the ``ssh`` or ``git-remote-https`` it
started. Values from the workflow reach git only as separate arguments after ``--``, and
refs are checked with ``git check-ref-format`` first: a branch named ``--upload-pack=…``
is refused, not run.

Credentials come from a ``git`` connection and never appear in an argument or a log:
a token is answered through ``GIT_ASKPASS`` (a small script reading it from the child's
environment), an SSH key is written to a 0600 file in a private temporary directory for
``GIT_SSH_COMMAND`` and deleted afterwards, and credential helpers are switched off so
git cannot store them. ``GIT_TERMINAL_PROMPT=0`` and ``BatchMode`` make a missing
credential fail at once instead of waiting for a prompt nobody answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.connections import ConnectionConfig, ConnectionType
from plait.actions.files import relative, resolve_in_workdir
from plait.errors import PlaitError

Op = Literal["clone", "fetch", "pull", "checkout", "commit", "tag", "push"]
_NETWORK_OPS = {"clone", "fetch", "pull", "push"}
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_AUTHOR = re.compile(r"^\s*(?P<name>[^<>]+?)\s*<(?P<email>[^<>\s]+)>\s*$")
#: what git says when trying again with the same input cannot help
_FINAL_ERRORS = (
    "authentication failed", "could not read username", "could not read password",
    "permission denied", "not found", "does not exist", "rejected", "does not appear to be",
    "host key verification failed", "invalid", "not a git repository",
)  # fmt: skip
_ASKPASS = """#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "$PLAIT_GIT_USERNAME" ;;
  *) printf '%s\\n' "$PLAIT_GIT_TOKEN" ;;
esac
"""
_DEFAULT_IDENTITY = ("Plait", "plait@localhost")

#: fields each operation needs, and the ones it may take besides (path, connection)
_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "clone": ({"url"}, {"ref", "depth"}),
    "fetch": (set(), {"url", "remote", "ref", "depth"}),
    "pull": (set(), {"url", "remote", "branch"}),
    "checkout": (set(), {"ref", "branch"}),
    "commit": ({"message"}, {"files", "author", "allow_empty"}),
    "tag": ({"tag"}, {"ref", "message", "author", "force"}),
    "push": (set(), {"url", "remote", "branch", "tag", "force"}),
}


class GitConnectionConfig(ConnectionConfig):
    username: str | None = Field(
        None, description="User for HTTPS (default x-access-token, which token hosts accept)."
    )
    token: SecretStr | None = Field(None, description="Password or access token for HTTPS.")
    ssh_key: SecretStr | None = Field(None, description="A private key (PEM/OpenSSH) for SSH.")
    known_hosts: str | None = Field(
        None, description="known_hosts lines; without them a new SSH host key is trusted once."
    )
    url: str | None = Field(None, description="A repository that `test` lists (git ls-remote).")


class GitConnection(ConnectionType):
    name = "git"
    description = "Credentials for git remotes: an HTTPS token or an SSH key."
    Config = GitConnectionConfig

    async def test(self, config: GitConnectionConfig) -> str:
        version = (await _plain_git(["--version"])).strip()
        if not config.url:
            return f"{version}; give url to check the credentials against a repository"
        creds = _Credentials.from_config(config.model_dump() | _revealed(config))
        try:
            env = creds.environ({})
            result = await _exec(["ls-remote", "--heads", "--", config.url], Path.cwd(), env)
        finally:
            creds.cleanup()
        if result.code != 0:
            raise PlaitError(f"git ls-remote {_redact(config.url)}: {result.reason()}")
        heads = len([line for line in result.stdout.splitlines() if line.strip()])
        return f"{version}; {_redact(config.url)} answered with {heads} branch(es)"


def _revealed(config: GitConnectionConfig) -> dict[str, str | None]:
    return {
        key: value.get_secret_value() if value is not None else None
        for key, value in (("token", config.token), ("ssh_key", config.ssh_key))
    }


class GitInput(ActionInput):
    op: Op = Field(description="What to do.")
    url: str | None = Field(
        None,
        validation_alias=AliasChoices("url", "repo"),
        description="The repository URL (clone), or a URL instead of the remote name.",
    )
    path: str | None = Field(
        None, description="The repository directory in the work directory (default: clone's "
        "name from the URL, else the work directory itself).",
    )  # fmt: skip
    ref: str | None = Field(None, description="Branch, tag or commit to check out or tag.")
    branch: str | None = Field(None, description="Branch to switch to or create, pull or push.")
    remote: str = Field("origin", description="Remote name for fetch, pull and push.")
    depth: int | None = Field(None, ge=1, description="Shallow clone or fetch.")
    message: str | None = Field(None, description="Commit message (tag: annotation).")
    tag: str | None = Field(None, description="Tag to create (tag) or push (push).")
    author: str | None = Field(None, description='"Name <email>" for commit and tag.')
    files: list[str] | None = Field(None, description="commit: what to stage (default all).")
    allow_empty: bool = Field(False, description="commit even when nothing changed.")
    force: bool = Field(False, description="tag: move an existing tag; push: --force.")
    connection: str | None = Field(None, description="A git connection with credentials.")

    @model_validator(mode="after")
    def _fits_op(self) -> GitInput:
        needed, optional = _FIELDS[self.op]
        given = self.model_fields_set - {"op", "path", "connection"}
        missing = sorted(n for n in needed if getattr(self, n) is None)
        if missing:
            raise ValueError(f"op {self.op} needs {' and '.join(missing)}")
        extra = sorted(given - needed - optional)
        if extra:
            raise ValueError(f"op {self.op} does not take {', '.join(extra)}")
        for name in ("url", "ref", "branch", "remote", "tag"):
            value = getattr(self, name)
            if isinstance(value, str) and (not value.strip() or value.startswith("-")):
                raise ValueError(f"{name} {value!r} is not valid (empty, or starts with -)")
        if self.author is not None and not _AUTHOR.match(self.author):
            raise ValueError(f'author {self.author!r} is not "Name <email>"')
        return self


class GitOutput(BaseModel):
    path: str
    commit: str | None
    branch: str | None
    tag: str | None
    changed: bool


@dataclass
class _Result:
    code: int
    stdout: str
    stderr: str

    def reason(self) -> str:
        """The line that says why: git's last ``fatal:``/``error:``, after the refs a
        push refused (``! [rejected] main -> main (fetch first)``)."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        refused = [line for line in lines if line.startswith("! [")]
        fatal = [line for line in lines if line.startswith(("fatal:", "error:", "remote:"))]
        last = (fatal or lines or [f"exit code {self.code}"])[-1]
        return "; ".join([*refused[:5], last])[:500]


@dataclass
class _Credentials:
    """Credential files and variables for one step, removed by :meth:`cleanup`."""

    username: str | None = None
    token: str | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    _dir: str | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> _Credentials:
        return cls(
            config.get("username"), config.get("token"), config.get("ssh_key"),
            config.get("known_hosts"),
        )  # fmt: skip

    @property
    def any(self) -> bool:
        return bool(self.token or self.ssh_key)

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {**base, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        if not self.any:
            return env
        private = self._private_dir()
        if self.token:
            askpass = os.path.join(private, "askpass.sh")
            _write_private(askpass, _ASKPASS, 0o700)
            env |= {
                "GIT_ASKPASS": askpass,
                "PLAIT_GIT_USERNAME": self.username or "x-access-token",
                "PLAIT_GIT_TOKEN": self.token,
            }
        if self.ssh_key:
            key = os.path.join(private, "id_key")
            _write_private(key, self.ssh_key.strip() + "\n", 0o600)
            command = ["ssh", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
            if self.known_hosts:
                hosts = os.path.join(private, "known_hosts")
                _write_private(hosts, self.known_hosts.strip() + "\n", 0o600)
                command += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={hosts}"]
            else:
                command += ["-o", "StrictHostKeyChecking=accept-new"]
            env["GIT_SSH_COMMAND"] = shlex.join(command)
        return env

    def _private_dir(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="plait-git-")  # 0700
        return self._dir

    def cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _write_private(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


class _Git:
    """Runs git for one step: the environment, the identity and the log."""

    def __init__(self, ctx: ActionContext, input: GitInput, env: dict[str, str]) -> None:
        self.ctx = ctx
        self.input = input
        self.env = env
        self.global_args = ["-c", "protocol.ext.allow=never"]

    async def run(self, *args: str, cwd: Path, check: bool = True, log: bool = True) -> _Result:
        if log:
            shown = " ".join(_redact(a) if "://" in a else shlex.quote(a) for a in args)
            self.ctx.log("system", f"git {shown}")
        result = await _exec([*self.global_args, *args], cwd, self.env)
        if log:
            for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                for line in text.splitlines():
                    if line.strip():
                        self.ctx.log(stream, line)
        if check and result.code != 0:
            reason = self.ctx.mask(result.reason())
            lowered = reason.lower()
            retryable = self.input.op in _NETWORK_OPS and not any(
                word in lowered for word in _FINAL_ERRORS
            )
            raise ActionFailed(f"git {args[0]}: {reason}", retryable=retryable)
        return result

    async def value(self, *args: str, cwd: Path) -> str | None:
        """Stdout of a quiet query (``rev-parse``…), None when git says no."""
        result = await self.run(*args, cwd=cwd, check=False, log=False)
        return result.stdout.strip() or None if result.code == 0 else None

    async def check_ref(self, kind: str, name: str, cwd: Path) -> None:
        args = ["check-ref-format", "--branch", name] if kind == "branch" else [
            "check-ref-format", f"refs/tags/{name}"
        ]  # fmt: skip
        if (await self.run(*args, cwd=cwd, check=False, log=False)).code != 0:
            raise ActionFailed(f"{name!r} is not a valid {kind} name", retryable=False)

    async def identity(self, cwd: Path) -> None:
        """Author and committer: ``author`` if given, else git's configuration, else
        Plait's own (a server rarely has a git identity configured)."""
        if self.input.author:
            match = _AUTHOR.match(self.input.author)
            assert match is not None
            name, email = match["name"], match["email"]
        elif await self.value("config", "user.email", cwd=cwd):
            return
        else:
            name, email = _DEFAULT_IDENTITY
        for role in ("AUTHOR", "COMMITTER"):
            self.env[f"GIT_{role}_NAME"] = name
            self.env[f"GIT_{role}_EMAIL"] = email


class GitAction(Action):
    name = "git"
    version = "1"
    description = "Clone, fetch, pull, check out, commit, tag and push git repositories."
    Input = GitInput
    Output = GitOutput

    async def execute(self, ctx: ActionContext, input: GitInput) -> ActionResult:
        creds = _Credentials()
        if input.connection:
            conn = ctx.connection(input.connection)
            if conn.type != "git":
                raise ActionFailed(
                    f"connection {conn.name!r} is of type {conn.type!r}; git needs a git "
                    "connection",
                    retryable=False,
                )
            creds = _Credentials.from_config(conn.config)
        try:
            git = _Git(ctx, input, creds.environ(_step_environ(ctx)))
            if creds.any:
                git.global_args += ["-c", "credential.helper="]
            rel = input.path or (_clone_name(input.url) if input.op == "clone" else ".")
            repo = resolve_in_workdir(ctx.workdir, rel, what="path")
            before = None if input.op == "clone" else await _head(git, repo)
            tag = await getattr(self, f"_{input.op}")(git, input, repo)
            after = await _head(git, repo)
            branch = await git.value("symbolic-ref", "-q", "--short", "HEAD", cwd=repo)
        finally:
            creds.cleanup()
        outputs = {
            "path": relative(rel),
            "commit": after,
            "branch": branch,
            "tag": tag,
            "changed": before != after,
        }
        return ActionResult(outputs=outputs)

    # -- operations: each returns the tag it made or pushed (or None) --------------------
    async def _clone(self, git: _Git, input: GitInput, repo: Path) -> str | None:
        assert input.url is not None
        if _has_content(repo):
            origin = await git.value("remote", "get-url", "origin", cwd=repo)
            if origin != input.url:
                raise ActionFailed(
                    f"{input.path or repo.name} already exists and is not a clone of "
                    f"{_redact(input.url)}",
                    retryable=False,
                )
            # A retried or resumed step: the clone is there, bring it up to date.
            await git.run("fetch", "--tags", "--", "origin", cwd=repo)
        else:
            args = ["clone"]
            if input.depth:
                args += ["--depth", str(input.depth)]
            if input.ref and not _SHA.fullmatch(input.ref):
                args += ["--branch", input.ref]
            repo.parent.mkdir(parents=True, exist_ok=True)
            await git.run(*args, "--", input.url, str(repo), cwd=repo.parent)
        if input.ref:
            await git.run("checkout", "-q", input.ref, "--", cwd=repo)
        return None

    async def _fetch(self, git: _Git, input: GitInput, repo: Path) -> str | None:
        args = ["fetch", "--tags"]
        if input.depth:
            args += ["--depth", str(input.depth)]
        args += ["--", input.url or input.remote]
        await git.run(*args, *([input.ref] if input.ref else []), cwd=repo)
        return None

    async def _pull(self, git: _Git, input: GitInput, repo: Path) -> str | None:
        args = ["pull", "--ff-only", "--", input.url or input.remote]
        if input.branch:
            await git.check_ref("branch", input.branch, repo)
            args.append(input.branch)
        await git.run(*args, cwd=repo)
        return None

    async def _checkout(self, git: _Git, input: GitInput, repo: Path) -> str | None:
        if input.branch is None and input.ref is None:
            raise ActionFailed("op checkout needs ref or branch", retryable=False)
        if input.branch is None:
            assert input.ref is not None
            await git.run("checkout", "-q", input.ref, "--", cwd=repo)
            return None
        await git.check_ref("branch", input.branch, repo)
        if input.ref is not None:  # the branch made (or reset) at ref
            await git.run("checkout", "-q", "-B", input.branch, input.ref, "--", cwd=repo)
            return None
        known = await git.value(
            "rev-parse", "-q", "--verify", f"refs/heads/{input.branch}", cwd=repo
        )
        remote = await git.value(
            "rev-parse", "-q", "--verify", f"refs/remotes/origin/{input.branch}", cwd=repo
        )
        if known or remote:  # git sets up tracking of origin's branch by itself
            await git.run("checkout", "-q", input.branch, "--", cwd=repo)
        else:
            await git.run("checkout", "-q", "-b", input.branch, cwd=repo)
        return None

    async def _commit(self, git: _Git, input: GitInput, repo: Path) -> str | None:
        assert input.message is not None
        paths = ["."]
        if input.files is not None:
            paths = _stage_paths(repo, input.files)
        await git.run("add", "-A", "--", *paths, cwd=repo)
        if not input.allow_empty:
            staged = await git.run("diff", "--cached", "--quiet", cwd=repo, check=False, log=False)
            if staged.code == 0:
                git.ctx.log("system", "git: nothing to commit")
                return None
        await git.identity(repo)
        extra = ["--allow-empty"] if input.allow_empty else []
        await git.run("commit", "-q", *extra, "-m", input.message, cwd=repo)
        return None

    async def _tag(self, git: _Git, input: GitInput, repo: Path) -> str | None:
        assert input.tag is not None
        await git.check_ref("tag", input.tag, repo)
        target = await git.value(
            "rev-parse", "-q", "--verify", f"{input.ref or 'HEAD'}^{{commit}}", cwd=repo
        )
        if target is None:
            raise ActionFailed(f"no commit {input.ref or 'HEAD'} to tag", retryable=False)
        existing = await git.value(
            "rev-parse", "-q", "--verify", f"refs/tags/{input.tag}^{{commit}}", cwd=repo
        )
        if existing == target:
            return input.tag  # already there: a retried step succeeds
        if existing and not input.force:
            raise ActionFailed(
                f"tag {input.tag} already exists at {existing[:12]} (set force: true to move it)",
                retryable=False,
            )
        await git.identity(repo)
        force = ["-f"] if input.force else []
        message = input.message or input.tag
        await git.run("tag", "-a", *force, "-m", message, "--", input.tag, target, cwd=repo)
        return input.tag

    async def _push(self, git: _Git, input: GitInput, repo: Path) -> str | None:
        refspecs: list[str] = []
        branch = input.branch
        if branch is None and input.tag is None:
            branch = await git.value("symbolic-ref", "-q", "--short", "HEAD", cwd=repo)
            if branch is None:
                raise ActionFailed(
                    "HEAD is detached: give branch (or tag) to push", retryable=False
                )
        if branch is not None:
            await git.check_ref("branch", branch, repo)
            refspecs.append(f"refs/heads/{branch}:refs/heads/{branch}")
        if input.tag is not None:
            await git.check_ref("tag", input.tag, repo)
            refspecs.append(f"refs/tags/{input.tag}:refs/tags/{input.tag}")
        force = ["--force"] if input.force else []
        await git.run("push", *force, "--", input.url or input.remote, *refspecs, cwd=repo)
        return input.tag


async def _head(git: _Git, repo: Path) -> str | None:
    if not _is_dir(repo):
        return None
    return await git.value("rev-parse", "-q", "--verify", "HEAD^{commit}", cwd=repo)


def _is_dir(path: Path) -> bool:
    return path.is_dir()


def _has_content(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _stage_paths(repo: Path, files: list[str]) -> list[str]:
    """``files`` relative to the repository, each checked to stay inside it."""
    return [
        os.path.relpath(resolve_in_workdir(repo, name, what="file", follow=False), repo)
        for name in files
    ]


def _clone_name(url: str | None) -> str:
    """The directory ``git clone`` would make for ``url``."""
    tail = (url or "").rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = tail.removesuffix(".git")
    return name if name and name not in (".", "..") else "repo"


def _redact(url: str) -> str:
    """``url`` without a password or token in it (what logs and messages show)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and not (parts.username and "@" in parts.netloc):
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _step_environ(ctx: ActionContext) -> dict[str, str]:
    """This process's environment less Plait's own credentials (as for shell steps),
    plus the step's env."""
    from plait.actions.shell import _base_environ

    base = {os.fsdecode(k): os.fsdecode(v) for k, v in _base_environ().items()}
    return {**base, **ctx.env}


async def _plain_git(args: list[str]) -> str:
    result = await _exec(args, Path.cwd(), {**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if result.code != 0:
        raise PlaitError(f"git {' '.join(args)}: {result.reason()}")
    return result.stdout


async def _exec(args: list[str], cwd: Path, env: Mapping[str, str]) -> _Result:
    """Run git to the end; on cancel, kill its whole process group (ssh included)."""
    git = shutil.which("git")
    if git is None:
        raise ActionFailed("git is not installed (no git on PATH)", retryable=False)
    proc = await asyncio.create_subprocess_exec(
        git, *args,
        cwd=cwd, env=dict(env), start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError, ProcessLookupError):
            await asyncio.shield(proc.wait())
        raise
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # what it left behind (an ssh master…)
    return _Result(
        proc.returncode if proc.returncode is not None else -1,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
    )
