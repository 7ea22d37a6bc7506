"""Pure helpers of the file, archive and git actions: paths kept inside the work
directory, archive member names, formats, clone names and URLs shown without secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plait.actions.archive import format_of, safe_name
from plait.actions.base import ActionFailed
from plait.actions.files import FileInput, relative, resolve_in_workdir
from plait.actions.git import GitInput, _clone_name, _redact


def test_paths_inside_the_work_directory_resolve(tmp_path: Path) -> None:
    root = Path(os.path.realpath(tmp_path))
    assert resolve_in_workdir(tmp_path, "a/b.txt") == root / "a" / "b.txt"
    assert resolve_in_workdir(tmp_path, "a/../b.txt") == root / "b.txt"
    assert resolve_in_workdir(tmp_path, ".") == root


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/passwd", "is absolute"),
        ("../outside", "leads out"),
        ("a/../../outside", "leads out"),
        ("", "empty"),
        ("a\x00b", "not a path"),
    ],
)
def test_paths_that_leave_are_refused(tmp_path: Path, path: str, reason: str) -> None:
    with pytest.raises(ActionFailed, match=reason) as caught:
        resolve_in_workdir(tmp_path, path)
    assert caught.value.retryable is False


def test_symlinks_leading_out_are_refused(tmp_path: Path) -> None:
    (tmp_path / "out").symlink_to("/etc")
    (tmp_path / "file").symlink_to("/etc/hostname")
    (tmp_path / "inner").mkdir()
    (tmp_path / "ok").symlink_to("inner")
    for path in ("out/passwd", "file", "out"):
        with pytest.raises(ActionFailed, match="through a symlink"):
            resolve_in_workdir(tmp_path, path)
    assert resolve_in_workdir(tmp_path, "ok/x").parent.name == "inner"
    # the link itself (to delete it) is inside, wherever it points
    assert resolve_in_workdir(tmp_path, "out", follow=False).name == "out"
    with pytest.raises(ActionFailed, match="through a symlink"):
        resolve_in_workdir(tmp_path, "out/passwd", follow=False)


def test_relative_paths_for_outputs() -> None:
    assert relative("a/./b/../c.txt") == "a/c.txt"
    assert relative(".") == "."


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a/b.txt", "a/b.txt"), ("./a//b/", "a/b"), ("./", None), (".", None)],
)
def test_safe_member_names(name: str, expected: str | None) -> None:
    assert safe_name(name) == expected


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "\\windows\\x", "C:/x", "a\\..\\..\\x", "a\x00"]
)
def test_unsafe_member_names_are_refused(name: str) -> None:
    with pytest.raises(ActionFailed, match="refusing the archive"):
        safe_name(name)


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("a.tar.gz", None, "tar.gz"),
        ("a.TGZ", None, "tar.gz"),
        ("a.tar", None, "tar"),
        ("a.zip", None, "zip"),
        ("a.tar.xz", None, "tar.xz"),
        ("a.bin", None, None),
        ("a.bin", "tgz", "tar.gz"),
        ("a.zip", "tar", "tar"),
    ],
)
def test_archive_format_from_name(name: str, given: str | None, expected: str | None) -> None:
    assert format_of(name, given) == expected


def test_file_input_says_what_an_op_needs_and_refuses() -> None:
    with pytest.raises(ValueError, match="op write needs content"):
        FileInput(op="write", path="a")
    with pytest.raises(ValueError, match="op read does not take content"):
        FileInput(op="read", path="a", content="x")
    with pytest.raises(ValueError, match="not octal"):
        FileInput(op="write", path="a", content="", mode="rw-r--r--")


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://example.com/org/repo.git", "repo"),
        ("https://example.com/org/repo/", "repo"),
        ("git@example.com:org/tool.git", "tool"),
        ("/srv/git/project.git", "project"),
        ("..", "repo"),
    ],
)
def test_clone_directory_names(url: str, name: str) -> None:
    assert _clone_name(url) == name


def test_urls_are_shown_without_credentials() -> None:
    assert _redact("https://user:tok3n@example.com/r.git") == "https://***@example.com/r.git"
    assert _redact("https://tok3n@example.com/r.git") == "https://***@example.com/r.git"
    assert _redact("https://example.com/r.git") == "https://example.com/r.git"
    assert _redact("git@example.com:r.git") == "git@example.com:r.git"


def test_git_input_refuses_option_like_values() -> None:
    with pytest.raises(ValueError, match="starts with -"):
        GitInput(op="clone", url="--upload-pack=touch /tmp/x")
    with pytest.raises(ValueError, match="starts with -"):
        GitInput(op="checkout", ref="-b")
    with pytest.raises(ValueError, match="op clone needs url"):
        GitInput(op="clone")
    with pytest.raises(ValueError, match="op checkout does not take message"):
        GitInput(op="checkout", ref="main", message="x")
    with pytest.raises(ValueError, match="Name <email>"):
        GitInput(op="commit", message="m", author="nobody")
    assert (
        GitInput.model_validate({"op": "clone", "repo": "https://x/y.git"}).url == "https://x/y.git"
    )
