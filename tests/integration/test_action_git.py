"""The git action with the real git CLI on local repositories: clone, checkout, commit,
tag, push to a bare repository and clone again; credentials over real HTTP (git
http-backend behind a server that wants a token) and SSH keys handed to ssh in a 0600
file that is gone afterwards; and a workflow doing a release end to end."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from plait.actions.base import ActionContext, ActionFailed
from plait.actions.connections import EnvConnections
from plait.actions.git import GitAction, GitInput
from plait.local import LocalSession
from plait.model import load_workflow
from plait.settings import Settings

TOKEN = "ghp_s3cr3t-t0ken-for-tests"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEta2V5\n-----END OPENSSH PRIVATE KEY-----"


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    ident = ["-c", "user.name=Seed", "-c", "user.email=seed@example.com"]
    done = subprocess.run(
        ["git", *ident, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository whose main branch has one commit (README)."""
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("init", "-q", "--initial-branch=main", str(seed), cwd=tmp_path)
    (seed / "README").write_text("hello\n")
    git("add", "README", cwd=seed)
    git("commit", "-q", "-m", "first", cwd=seed)
    git("push", "-q", str(bare), "main", cwd=seed)
    return bare


class Log(list[tuple[str, str]]):
    def __call__(self, stream: str, line: str) -> None:
        self.append((stream, line))

    def text(self) -> str:
        return "\n".join(line for _, line in self)


def make_ctx(
    workdir: Path, log: Log | None = None, connections: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> ActionContext:  # fmt: skip
    source = EnvConnections(connections or {})
    return ActionContext(
        run_id="run-1",
        workflow="wf",
        step="git",
        attempt=1,
        workdir=workdir,
        env=env or {},
        log=log if log is not None else Log(),
        mask=lambda text: text,
        connections=lambda name: source.get("default", name),
    )


async def run_git(workdir: Path, log: Log | None = None, **kw: Any) -> dict[str, Any]:
    connections = kw.pop("connections", None)
    env = kw.pop("env", None)
    ctx = make_ctx(workdir, log, connections, env)
    return (await GitAction().execute(ctx, GitInput.model_validate(kw))).outputs


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def test_clone_commit_tag_push_and_clone_again(remote: Path, work: Path) -> None:
    head = git("rev-parse", "main", cwd=remote)
    out = await run_git(work, op="clone", url=str(remote))
    assert out == {"path": "remote", "commit": head, "branch": "main", "tag": None, "changed": True}
    repo = work / "remote"
    (repo / "app.txt").write_text("v1\n")
    out = await run_git(
        work, op="commit", path="remote", message="Add app", author="Rel Bot <bot@example.com>"
    )
    assert out["changed"] is True
    assert out["commit"] != head
    assert git("log", "-1", "--format=%an <%ae>|%cn|%s", cwd=repo) == (
        "Rel Bot <bot@example.com>|Rel Bot|Add app"
    )
    again = await run_git(work, op="commit", path="remote", message="Nothing")
    assert again["changed"] is False
    assert again["commit"] == out["commit"]
    tagged = await run_git(work, op="tag", path="remote", tag="v1.0.0", message="Release 1.0.0")
    assert tagged["tag"] == "v1.0.0"
    assert tagged["commit"] == out["commit"]
    pushed = await run_git(work, op="push", path="remote", branch="main", tag="v1.0.0")
    assert pushed["tag"] == "v1.0.0"
    assert git("rev-parse", "main", cwd=remote) == out["commit"]
    assert git("rev-parse", "v1.0.0^{commit}", cwd=remote) == out["commit"]
    assert git("cat-file", "-t", "v1.0.0", cwd=remote) == "tag"  # annotated
    other = work / "other"
    out2 = await run_git(work, op="clone", url=str(remote), path="other", ref="v1.0.0")
    assert out2["commit"] == out["commit"]
    assert out2["branch"] is None  # a tag checks out detached
    assert (other / "app.txt").read_text() == "v1\n"


async def test_commit_only_the_files_given(remote: Path, work: Path) -> None:
    await run_git(work, op="clone", url=str(remote), path="r")
    (work / "r/keep.txt").write_text("yes")
    (work / "r/skip.txt").write_text("no")
    await run_git(work, op="commit", path="r", message="only keep", files=["keep.txt"])
    assert git("show", "--name-only", "--format=", "HEAD", cwd=work / "r") == "keep.txt"
    assert git("status", "--porcelain", cwd=work / "r") == "?? skip.txt"
    with pytest.raises(ActionFailed, match="leads out"):
        await run_git(work, op="commit", path="r", message="x", files=["../../etc/passwd"])


async def test_branches_checkout_and_pull(remote: Path, work: Path, tmp_path: Path) -> None:
    await run_git(work, op="clone", url=str(remote), path="r")
    out = await run_git(work, op="checkout", path="r", branch="feature/x")
    assert out["branch"] == "feature/x"
    assert out["changed"] is False  # a new branch at the same commit
    (work / "r/f.txt").write_text("f")
    committed = await run_git(work, op="commit", path="r", message="feature")
    await run_git(work, op="push", path="r")  # the current branch
    assert git("rev-parse", "feature/x", cwd=remote) == committed["commit"]
    back = await run_git(work, op="checkout", path="r", ref="main")
    assert back["branch"] == "main"
    assert back["changed"] is True
    # someone else pushes to main; pull fast-forwards
    seed = tmp_path / "seed"
    (seed / "other.txt").write_text("o")
    git("add", "other.txt", cwd=seed)
    git("commit", "-q", "-m", "other", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    pulled = await run_git(work, op="pull", path="r", branch="main")
    assert pulled["commit"] == git("rev-parse", "HEAD", cwd=seed)
    assert pulled["changed"] is True
    # a second clone checks out a branch that exists only on the remote
    await run_git(work, op="clone", url=str(remote), path="r2")
    out = await run_git(work, op="checkout", path="r2", branch="feature/x")
    assert out["commit"] == committed["commit"]
    sha = committed["commit"][:10]
    out = await run_git(work, op="clone", url=str(remote), path="r3", ref=sha)
    assert out["commit"] == committed["commit"]


async def test_clone_again_is_idempotent_and_tags_too(remote: Path, work: Path) -> None:
    first = await run_git(work, op="clone", url=str(remote), path="r")
    second = await run_git(work, op="clone", url=str(remote), path="r")
    assert second["commit"] == first["commit"]
    await run_git(work, op="tag", path="r", tag="v1")
    assert (await run_git(work, op="tag", path="r", tag="v1"))["tag"] == "v1"  # same commit
    (work / "r/x").write_text("x")
    await run_git(work, op="commit", path="r", message="x")
    with pytest.raises(ActionFailed, match=r"already exists.*force: true"):
        await run_git(work, op="tag", path="r", tag="v1")
    moved = await run_git(work, op="tag", path="r", tag="v1", force=True)
    assert git("rev-parse", "v1^{commit}", cwd=work / "r") == moved["commit"]
    (work / "elsewhere").mkdir()
    (work / "elsewhere/file").write_text("x")
    with pytest.raises(ActionFailed, match="already exists and is not a clone"):
        await run_git(work, op="clone", url=str(remote), path="elsewhere")


async def test_refusals_and_failures(remote: Path, work: Path, tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match="leads out"):
        await run_git(work, op="clone", url=str(remote), path="../escape")
    assert not (tmp_path / "escape").exists()
    await run_git(work, op="clone", url=str(remote), path="r")
    with pytest.raises(ActionFailed, match="not a valid tag name"):
        await run_git(work, op="tag", path="r", tag="bad..name")
    with pytest.raises(ActionFailed, match="not a valid branch name"):
        await run_git(work, op="checkout", path="r", branch="a b")
    with pytest.raises(ActionFailed) as caught:
        await run_git(work, op="checkout", path="r", ref="no-such-ref")
    assert caught.value.retryable is False
    # a push that is not a fast-forward is rejected, for good
    git("commit", "-q", "--allow-empty", "-m", "diverge", cwd=work / "r")
    git("reset", "-q", "--hard", "HEAD~1", cwd=work / "r")
    (work / "r/other").write_text("1")
    git("add", "other", cwd=work / "r")
    git("commit", "-q", "-m", "local", cwd=work / "r")
    seed = tmp_path / "seed"
    git("commit", "-q", "--allow-empty", "-m", "remote moved", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    with pytest.raises(ActionFailed, match="rejected") as caught:
        await run_git(work, op="push", path="r")
    assert caught.value.retryable is False
    # a missing repository fails at once (no prompt), naming the cause
    with pytest.raises(ActionFailed, match=r"nothing\.git' does not exist") as caught:
        await run_git(work, op="clone", url=str(tmp_path / "nothing.git"), path="n")
    assert caught.value.retryable is False


# -- credentials over HTTP -------------------------------------------------------------------
class _GitHttp(BaseHTTPRequestHandler):
    """git http-backend (smart HTTP) behind Basic auth that wants TOKEN."""

    root: Path
    seen: list[str]

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.seen.append(auth)
        expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        if auth != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def http_remote(remote: Path) -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_GitHttp,), {"root": remote.parent, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/remote.git", seen
    finally:
        server.shutdown()
        server.server_close()


def _private_dirs() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("plait-git-")}


async def test_https_token_from_a_connection(
    http_remote: tuple[str, list[str]], remote: Path, work: Path
) -> None:
    url, seen = http_remote
    connections = {"PLAIT_CONNECTION_FORGE": json.dumps({"type": "git", "token": TOKEN})}
    before = _private_dirs()
    log = Log()
    out = await run_git(
        work, log, op="clone", url=url, path="r", connection="forge", connections=connections
    )
    assert out["commit"] == git("rev-parse", "main", cwd=remote)
    assert any(a.startswith("Basic ") for a in seen)
    (work / "r/new.txt").write_text("n")
    await run_git(work, log, op="commit", path="r", message="over http")
    await run_git(work, log, op="push", path="r", connection="forge", connections=connections)
    assert git("log", "-1", "--format=%s", "main", cwd=remote) == "over http"
    assert TOKEN not in log.text()
    assert _private_dirs() == before  # the askpass script is gone
    assert "credential" not in git("config", "--local", "--list", cwd=work / "r").lower()


async def test_https_without_or_with_a_wrong_token_fails_at_once(
    http_remote: tuple[str, list[str]], work: Path
) -> None:
    url, _ = http_remote
    with pytest.raises(ActionFailed, match=r"could not read Username|Authentication failed"):
        await run_git(work, op="clone", url=url, path="a")
    wrong = {"PLAIT_CONNECTION_FORGE": json.dumps({"type": "git", "token": "wrong"})}
    with pytest.raises(ActionFailed, match="Authentication failed") as caught:
        await run_git(work, op="clone", url=url, path="b", connection="forge", connections=wrong)
    assert caught.value.retryable is False


async def test_connection_test_lists_the_repository(http_remote: tuple[str, list[str]]) -> None:
    from plait.actions.connections import default_types
    from plait.errors import PlaitError

    url, _ = http_remote
    cls = default_types().get("git")
    good = default_types().parse("git", {"token": TOKEN, "url": url})
    answer = await cls().test(good)
    assert answer.startswith("git version")
    assert "answered with 1 branch(es)" in answer
    bad = default_types().parse("git", {"token": "wrong", "url": url})
    with pytest.raises(PlaitError, match="Authentication failed"):
        await cls().test(bad)
    assert "give url" in await cls().test(default_types().parse("git", {}))


async def test_ssh_key_reaches_ssh_in_a_private_file_that_is_removed(
    tmp_path: Path, work: Path
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "ssh-record"
    (fake / "ssh").write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do printf "arg:%s\\n" "$a"; done > "$RECORD"\n'
        'while [ "$1" != "-i" ]; do shift; done\n'
        'stat -c "mode:%a" "$2" >> "$RECORD"\n'
        'cat "$2" >> "$RECORD"\n'
        "echo 'fake ssh: no network here' >&2\n"
        "exit 255\n"
    )
    (fake / "ssh").chmod(0o755)
    connections = {
        "PLAIT_CONNECTION_DEPLOY": json.dumps(
            {"type": "git", "ssh_key": SSH_KEY, "known_hosts": "example.invalid ssh-ed25519 AAAA"}
        )
    }
    env = {"PATH": f"{fake}:{os.environ['PATH']}", "RECORD": str(record)}
    log = Log()
    with pytest.raises(ActionFailed, match="Could not read from remote repository"):
        await run_git(
            work, log, op="clone", url="ssh://git@example.invalid/repo.git",
            connection="deploy", connections=connections, env=env,
        )  # fmt: skip
    lines = record.read_text().splitlines()
    key_path = lines[lines.index("arg:-i") + 1].removeprefix("arg:")
    assert "mode:600" in lines
    assert "\n".join(lines).count("bm90LWEta2V5") == 1  # the key's content, intact
    assert "arg:StrictHostKeyChecking=yes" in lines
    assert "arg:BatchMode=yes" in lines
    assert _gone(key_path)
    assert _gone(os.path.dirname(key_path))
    assert "bm90LWEta2V5" not in log.text()


def _gone(path: str) -> bool:
    return not os.path.exists(path)


# -- through the runtime ---------------------------------------------------------------------
async def test_a_release_workflow(remote: Path, tmp_path: Path) -> None:
    source = f"""
name: release
inputs:
  version: {{type: string}}
steps:
  - id: clone
    uses: git
    with: {{op: clone, repo: "{remote}", path: src}}
  - id: bump
    needs: [clone]
    uses: file
    with: {{op: write, path: src/VERSION, content: "${{{{ inputs.version }}}}"}}
  - id: commit
    needs: [bump]
    uses: git
    with:
      op: commit
      path: src
      message: "Release ${{{{ inputs.version }}}}"
      author: "Release Bot <release@example.com>"
  - id: tag
    needs: [commit]
    uses: git
    with: {{op: tag, path: src, tag: "v${{{{ inputs.version }}}}"}}
  - id: push
    needs: [tag]
    uses: git
    with: {{op: push, path: src, branch: main, tag: "${{{{ steps.tag.outputs.tag }}}}"}}
outputs:
  commit: "${{{{ steps.commit.outputs.commit }}}}"
  tag: "${{{{ steps.push.outputs.tag }}}}"
"""
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    try:
        plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
        result = await session.run(plan, source, {"version": "2.0.0"}, workdir=work)
    finally:
        await session.close()
    assert result.success, [s.error for s in result.steps]
    assert result.outputs is not None
    assert result.outputs["tag"] == "v2.0.0"
    assert git("rev-parse", "v2.0.0^{commit}", cwd=remote) == result.outputs["commit"]
    check = tmp_path / "check"
    git("clone", "-q", "--branch", "v2.0.0", str(remote), str(check), cwd=tmp_path)
    assert (check / "VERSION").read_text() == "2.0.0"
