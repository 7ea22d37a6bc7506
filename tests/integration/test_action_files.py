"""The file and archive actions on real files: every operation, paths kept inside the
work directory, templates, and extraction of malicious archives built here (traversal,
absolute names, escaping links, devices, bombs) refused with nothing written."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from plait.actions.archive import ArchiveAction, ArchiveInput
from plait.actions.base import ActionContext, ActionFailed
from plait.actions.files import FileAction, FileInput
from plait.local import LocalSession
from plait.model import load_workflow
from plait.settings import Settings


def make_ctx(workdir: Path, env: dict[str, str] | None = None) -> ActionContext:
    return ActionContext(
        run_id="run-7",
        workflow="wf",
        step="files",
        attempt=1,
        workdir=workdir,
        env=env or {},
        log=lambda stream, line: None,
        mask=lambda text: text,
    )


async def file(workdir: Path, **kw: Any) -> dict[str, Any]:
    return (await FileAction().execute(make_ctx(workdir), FileInput(**kw))).outputs


async def archive(workdir: Path, **kw: Any) -> dict[str, Any]:
    return (await ArchiveAction().execute(make_ctx(workdir), ArchiveInput(**kw))).outputs


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- file ----------------------------------------------------------------------------------
async def test_write_read_append_checksum_exists_delete(tmp_path: Path) -> None:
    out = await file(tmp_path, op="write", path="out/notes.txt", content="héllo\n", mode="0640")
    data = "héllo\n".encode()
    assert out == {"path": "out/notes.txt", "size": len(data), "sha256": sha(data)}
    assert stat.S_IMODE((tmp_path / "out/notes.txt").stat().st_mode) == 0o640
    out = await file(tmp_path, op="append", path="out/notes.txt", content="more\n")
    assert out["size"] == len(data) + 5
    out = await file(tmp_path, op="read", path="out/./notes.txt")
    assert out["content"] == "héllo\nmore\n"
    assert out["path"] == "out/notes.txt"
    assert out["sha256"] == sha("héllo\nmore\n".encode())
    out = await file(tmp_path, op="checksum", path="out/notes.txt")
    assert out["sha256"] == sha("héllo\nmore\n".encode())
    assert (await file(tmp_path, op="exists", path="out"))["type"] == "directory"
    assert (await file(tmp_path, op="exists", path="out/notes.txt"))["exists"] is True
    assert (await file(tmp_path, op="exists", path="nope"))["exists"] is False
    assert (await file(tmp_path, op="delete", path="out/notes.txt"))["deleted"] is True
    assert (await file(tmp_path, op="delete", path="out/notes.txt"))["deleted"] is False
    with pytest.raises(ActionFailed, match="set recursive: true"):
        await file(tmp_path, op="delete", path="out")
    assert (await file(tmp_path, op="delete", path="out", recursive=True))["deleted"] is True
    assert not (tmp_path / "out").exists()


async def test_binary_content_through_base64(tmp_path: Path) -> None:
    blob = bytes(range(256))
    import base64

    encoded = base64.b64encode(blob).decode()
    await file(tmp_path, op="write", path="blob.bin", content=encoded, encoding="base64")
    assert (tmp_path / "blob.bin").read_bytes() == blob
    with pytest.raises(ActionFailed, match="not UTF-8 text; read it with encoding: base64"):
        await file(tmp_path, op="read", path="blob.bin")
    assert (await file(tmp_path, op="read", path="blob.bin", encoding="base64"))[
        "content"
    ] == encoded
    with pytest.raises(ActionFailed, match="larger than 10 bytes"):
        await file(tmp_path, op="read", path="blob.bin", max_bytes=10)


async def test_writes_are_atomic_and_keep_permissions(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("old")
    script.chmod(0o755)
    await file(tmp_path, op="write", path="run.sh", content="#!/bin/sh\necho new\n")
    assert script.read_text() == "#!/bin/sh\necho new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert os.listdir(tmp_path) == ["run.sh"]  # no temporary file left


async def test_copy_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "src/sub").mkdir(parents=True)
    (tmp_path / "src/a.txt").write_text("A")
    (tmp_path / "src/sub/b.txt").write_text("B")
    (tmp_path / "src/link").symlink_to("a.txt")
    out = await file(tmp_path, op="copy", source="src/a.txt", dest="copy/a.txt")
    assert out == {"path": "copy/a.txt", "size": 1, "sha256": sha(b"A")}
    out = await file(tmp_path, op="copy", source="src", dest="tree")
    assert out["files"] == 3
    assert (tmp_path / "tree/sub/b.txt").read_text() == "B"
    assert os.readlink(tmp_path / "tree/link") == "a.txt"
    with pytest.raises(ActionFailed, match="into itself"):
        await file(tmp_path, op="copy", source="src", dest="src/inner")


async def test_checksum_can_verify(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"abc")
    good = sha(b"abc")
    assert (await file(tmp_path, op="checksum", path="a", expect_sha256=good.upper()))["size"] == 3
    with pytest.raises(ActionFailed, match="expected 00") as caught:
        await file(tmp_path, op="checksum", path="a", expect_sha256="00" * 32)
    assert caught.value.outputs["sha256"] == good
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"op": "read", "path": "/etc/hostname"}, "absolute"),
        ({"op": "read", "path": "../secret"}, "leads out"),
        ({"op": "write", "path": "escape/x", "content": "pwned"}, "through a symlink"),
        ({"op": "read", "path": "hostname"}, "through a symlink"),
        ({"op": "write", "path": "hostname", "content": "pwned"}, "through a symlink"),
        ({"op": "append", "path": "sub/../../x", "content": "pwned"}, "leads out"),
        ({"op": "copy", "source": "hostname", "dest": "mine"}, "through a symlink"),
        ({"op": "copy", "source": "ok.txt", "dest": "escape/copied"}, "through a symlink"),
        ({"op": "template", "source": "/etc/hostname"}, "absolute"),
        ({"op": "delete", "path": "escape/anything"}, "through a symlink"),
        ({"op": "delete", "path": "."}, "refusing to delete the run's work directory"),
        ({"op": "checksum", "path": "escape/passwd"}, "through a symlink"),
    ],
)
async def test_paths_out_of_the_work_directory_are_refused(
    tmp_path: Path, kw: dict[str, Any], reason: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_text("secret")
    work = tmp_path / "work"
    work.mkdir()
    (work / "ok.txt").write_text("ok")
    (work / "escape").symlink_to(outside)
    (work / "hostname").symlink_to(outside / "hostname")
    with pytest.raises(ActionFailed, match=reason) as caught:
        await file(work, **kw)
    assert caught.value.retryable is False
    assert sorted(p.name for p in outside.iterdir()) == ["hostname"]
    assert (outside / "hostname").read_text() == "secret"


async def test_deleting_a_symlink_removes_the_link_only(tmp_path: Path) -> None:
    (tmp_path / "target.txt").write_text("keep")
    (tmp_path / "link").symlink_to("target.txt")
    assert (await file(tmp_path, op="delete", path="link"))["deleted"] is True
    assert (tmp_path / "target.txt").read_text() == "keep"


async def test_template_renders_with_the_expression_engine(tmp_path: Path) -> None:
    (tmp_path / "app.conf.tpl").write_text(
        "name=${{ name }}\nreplicas=${{ replicas * 2 }}\n"
        "hosts=${{ hosts | join(',') }}\nrun=${{ run.id }} env=${{ env.STAGE }}\n"
        "upper=${{ vars.name.upper() }}\nraw=${#array[@]} {% not jinja %}\n"
    )
    ctx = make_ctx(tmp_path, env={"STAGE": "prod"})
    inp = FileInput(
        op="template",
        source="app.conf.tpl",
        dest="out/app.conf",
        vars={"name": "api", "replicas": 2, "hosts": ["a", "b"]},
    )
    out = (await FileAction().execute(ctx, inp)).outputs
    text = (tmp_path / "out/app.conf").read_text()
    assert text == (
        "name=api\nreplicas=4\nhosts=a,b\nrun=run-7 env=prod\nupper=API\n"
        "raw=${#array[@]} {% not jinja %}\n"
    )
    assert out["sha256"] == sha(text.encode())
    # without dest the rendering is the output; one whole expression of data becomes JSON
    (tmp_path / "data.tpl").write_text("${{ config }}")
    out = await file(tmp_path, op="template", source="data.tpl", vars={"config": {"a": [1, 2]}})
    assert out["content"] == '{"a": [1, 2]}'


async def test_template_errors_name_the_file_and_the_expression(tmp_path: Path) -> None:
    (tmp_path / "bad.tpl").write_text("x=${{ missing.thing }}")
    with pytest.raises(ActionFailed, match=r"template bad\.tpl: expression .*missing") as caught:
        await file(tmp_path, op="template", source="bad.tpl", vars={"present": 1})
    assert caught.value.retryable is False
    (tmp_path / "evil.tpl").write_text("${{ ''.__class__.__mro__ }}")
    with pytest.raises(ActionFailed, match=r"template evil\.tpl"):
        await file(tmp_path, op="template", source="evil.tpl")


# -- archive -------------------------------------------------------------------------------
def _tree(root: Path) -> None:
    (root / "site/css").mkdir(parents=True)
    (root / "site/index.html").write_text("<h1>hi</h1>")
    (root / "site/css/app.css").write_text("body{}")
    (root / "site/run.sh").write_text("#!/bin/sh\n")
    (root / "site/run.sh").chmod(0o755)
    (root / "site/current").symlink_to("css/app.css")
    (root / "site/empty").mkdir()


@pytest.mark.parametrize("name", ["site.tar", "site.tar.gz", "site.tgz", "site.tar.xz", "site.zip"])
async def test_create_list_extract_round_trip(tmp_path: Path, name: str) -> None:
    _tree(tmp_path)
    made = await archive(tmp_path, op="create", source="site", dest=f"dist/{name}")
    blob = (tmp_path / "dist" / name).read_bytes()
    assert made == {"path": f"dist/{name}", "sha256": sha(blob), "size": len(blob), "entries": 6}
    listed = await archive(tmp_path, op="list", source=f"dist/{name}")
    assert listed["entries"] == 6
    assert listed["sha256"] == sha(blob)
    assert sorted(listed["names"]) == [
        "css/", "css/app.css", "current", "empty/", "index.html", "run.sh",
    ]  # fmt: skip
    out = await archive(tmp_path, op="extract", source=f"dist/{name}", dest="unpacked")
    assert out["entries"] == 6
    assert out["path"] == "unpacked"
    root = tmp_path / "unpacked"
    assert (root / "index.html").read_text() == "<h1>hi</h1>"
    assert (root / "css/app.css").read_text() == "body{}"
    assert os.readlink(root / "current") == "css/app.css"
    assert (root / "empty").is_dir()
    assert os.access(root / "run.sh", os.X_OK)
    assert out["size"] == len("<h1>hi</h1>") + len("body{}") + len("#!/bin/sh\n")


async def test_create_with_patterns_and_without_the_archive_itself(tmp_path: Path) -> None:
    _tree(tmp_path)
    out = await archive(tmp_path, op="create", source="site", dest="site/css.zip", files=["css"])
    names = zipfile.ZipFile(tmp_path / "site/css.zip").namelist()
    assert sorted(names) == ["css/", "css/app.css"]
    assert out["entries"] == 2
    out = await archive(tmp_path, op="create", source=".", dest="all.tar.gz", files=["*.html"])
    with tarfile.open(tmp_path / "all.tar.gz") as tar:
        assert tar.getnames() == ["site/index.html"]
    with pytest.raises(ActionFailed, match="cannot tell the format"):
        await archive(tmp_path, op="create", source="site", dest="site.bin")


async def test_extract_sniffs_the_format_and_refuses_junk(tmp_path: Path) -> None:
    _tree(tmp_path)
    await archive(tmp_path, op="create", source="site", dest="a.zip")
    os.rename(tmp_path / "a.zip", tmp_path / "download.bin")
    out = await archive(tmp_path, op="extract", source="download.bin", dest="x")
    assert out["entries"] == 6
    (tmp_path / "junk.bin").write_bytes(b"not an archive")
    with pytest.raises(ActionFailed, match="neither a tar nor a zip"):
        await archive(tmp_path, op="extract", source="junk.bin")


# malicious archives ---------------------------------------------------------------------
def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


MALICIOUS_TARS: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]] = {
    "dotdot": ([(_info("ok.txt"), b"fine"), (_info("../evil.txt"), b"pwned")], "climbs out"),
    "deep dotdot": ([(_info("a/b/../../../evil.txt"), b"pwned")], "climbs out"),
    "absolute": ([(_info("/tmp/plait-evil.txt"), b"pwned")], "absolute name"),
    "symlink out": ([(_info("link", tarfile.SYMTYPE, "../.."), None)], "leading out"),
    "symlink absolute": ([(_info("link", tarfile.SYMTYPE, "/etc"), None)], "absolute path"),
    "symlink then write": (
        [(_info("link", tarfile.SYMTYPE, "/tmp"), None), (_info("link/evil"), b"pwned")],
        "absolute path",
    ),
    "hardlink out": ([(_info("hard", tarfile.LNKTYPE, "../../etc/passwd"), None)], "climbs out"),
    "hardlink to nothing": (
        [(_info("hard", tarfile.LNKTYPE, "etc/passwd"), None)],
        "not an earlier file",
    ),
    "device": ([(_info("dev", tarfile.CHRTYPE), None)], "device file"),
    "fifo": ([(_info("pipe", tarfile.FIFOTYPE), None)], "device file or FIFO"),
}


@pytest.mark.parametrize("case", list(MALICIOUS_TARS))
async def test_malicious_tars_are_refused_before_anything_is_written(
    tmp_path: Path, case: str
) -> None:
    members, reason = MALICIOUS_TARS[case]
    work = tmp_path / "work"
    work.mkdir()
    _tar(work / "evil.tar", members)
    with pytest.raises(ActionFailed, match=reason) as caught:
        await archive(work, op="extract", source="evil.tar", dest="out")
    assert caught.value.retryable is False
    assert not (work / "out").exists()
    assert os.listdir(tmp_path) == ["work"]


async def test_a_symlink_chain_that_leads_out_is_removed(tmp_path: Path) -> None:
    # Each link alone stays inside, but together "up" ends outside: "here" -> ".",
    # then "up" -> "here/..". Only the final check, with both made, sees it.
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    _tar(
        work / "chain.tar",
        [
            (_info("up", tarfile.SYMTYPE, "here/.."), None),
            (_info("here", tarfile.SYMTYPE, "."), None),
            (_info("data.txt"), b"fine"),
        ],
    )
    with pytest.raises(ActionFailed, match="resolves outside"):
        await archive(work, op="extract", source="chain.tar", dest="out")
    assert not (work / "out/up").is_symlink()
    assert not (work / "out/here").is_symlink()


async def test_extract_never_writes_through_an_existing_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out/sub").symlink_to(outside)
    (work / "out/file.txt").symlink_to(outside / "target.txt")
    _tar(work / "a.tar", [(_info("sub/evil.txt"), b"pwned")])
    with pytest.raises(ActionFailed, match="is a symlink; nothing is written through one"):
        await archive(work, op="extract", source="a.tar", dest="out")
    _tar(work / "b.tar", [(_info("file.txt"), b"replaced")])
    await archive(work, op="extract", source="b.tar", dest="out")
    assert list(outside.iterdir()) == []  # the link was replaced, not followed
    assert (work / "out/file.txt").read_bytes() == b"replaced"
    assert not (work / "out/file.txt").is_symlink()


async def test_zip_traversal_and_links_are_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr("..\\..\\evil.txt", "pwned")
    with pytest.raises(ActionFailed, match="climbs out"):
        await archive(tmp_path, op="extract", source="evil.zip", dest="out")
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(ActionFailed, match="absolute path"):
        await archive(tmp_path, op="extract", source="link.zip", dest="out")
    assert not (tmp_path / "out").exists()


async def test_zip_bomb_and_entry_limits(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(3):
            z.writestr(f"zeros{i}", b"\0" * (2 * 1024 * 1024))
    assert (tmp_path / "bomb.zip").stat().st_size < 100_000
    with pytest.raises(ActionFailed, match="more than 5000000 bytes"):
        await archive(tmp_path, op="extract", source="bomb.zip", dest="out", max_size=5_000_000)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ActionFailed, match="more than 2 entries"):
        await archive(tmp_path, op="list", source="bomb.zip", max_entries=2)
    out = await archive(tmp_path, op="extract", source="bomb.zip", dest="out")
    assert out["size"] == 6 * 1024 * 1024


async def test_a_lying_size_header_is_caught_while_writing(tmp_path: Path) -> None:
    # The central directory says 10 bytes; the data inflates to 1 MiB. zipfile stops at
    # the declared size (and then fails the CRC): either way the limit holds.
    with zipfile.ZipFile(tmp_path / "liar.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big", b"\0" * (1024 * 1024))
    raw = bytearray((tmp_path / "liar.zip").read_bytes())
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (10).to_bytes(4, "little")  # uncompressed size
    local = raw.find(b"PK\x03\x04")
    raw[local + 22 : local + 26] = (10).to_bytes(4, "little")
    (tmp_path / "liar.zip").write_bytes(bytes(raw))
    with pytest.raises(ActionFailed):
        await archive(tmp_path, op="extract", source="liar.zip", dest="out", max_size=100)
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= 100


async def test_hard_links_inside_the_archive_are_copied(tmp_path: Path) -> None:
    _tar(
        tmp_path / "h.tar",
        [(_info("a.txt"), b"same"), (_info("dir/b.txt", tarfile.LNKTYPE, "a.txt"), None)],
    )
    out = await archive(tmp_path, op="extract", source="h.tar", dest="out")
    assert out["entries"] == 2
    assert (tmp_path / "out/dir/b.txt").read_bytes() == b"same"


async def test_extract_overwrite_choice(tmp_path: Path) -> None:
    _tar(tmp_path / "a.tar", [(_info("f.txt"), b"new")])
    (tmp_path / "out").mkdir()
    (tmp_path / "out/f.txt").write_text("old")
    with pytest.raises(ActionFailed, match="set overwrite: true"):
        await archive(tmp_path, op="extract", source="a.tar", dest="out", overwrite=False)
    await archive(tmp_path, op="extract", source="a.tar", dest="out")
    assert (tmp_path / "out/f.txt").read_text() == "new"


# -- through the runtime ---------------------------------------------------------------------
async def test_a_workflow_writes_templates_packs_and_unpacks(tmp_path: Path) -> None:
    source = """
name: release-files
inputs:
  version: {type: string}
steps:
  - id: notes
    uses: file
    with: {op: write, path: "build/NOTES", content: "release ${{ inputs.version }}"}
  - id: render
    needs: [notes]
    uses: file
    with:
      op: template
      source: templates/VERSION.tpl
      dest: build/VERSION
      vars: {version: "${{ inputs.version }}"}
  - id: pack
    needs: [render]
    uses: archive
    with: {op: create, source: build, dest: "dist/release-${{ inputs.version }}.tar.gz"}
  - id: unpack
    needs: [pack]
    uses: archive
    with: {op: extract, source: "${{ steps.pack.outputs.path }}", dest: check}
  - id: verify
    needs: [unpack]
    uses: file
    with:
      op: checksum
      path: check/VERSION
      expect_sha256: "${{ steps.render.outputs.sha256 }}"
  - id: escape
    needs: [verify]
    uses: file
    with: {op: read, path: ../../etc/hostname}
    on_error: continue
outputs:
  archive_sha: "${{ steps.pack.outputs.sha256 }}"
  notes: "${{ steps.notes.outputs.path }}"
"""
    home = tmp_path / "home"
    work = tmp_path / "work"
    (work / "templates").mkdir(parents=True)  # templates live in the checked-out repository
    (work / "templates/VERSION.tpl").write_text("v=${{ version }}")
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    try:
        plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
        result = await session.run(plan, source, {"version": "1.2.3"}, workdir=work)
    finally:
        await session.close()
    statuses = {s.id: s.status for s in result.steps}
    assert statuses["verify"] == "succeeded", [s.error for s in result.steps]
    assert (work / "check/VERSION").read_text() == "v=1.2.3"
    blob = (work / "dist/release-1.2.3.tar.gz").read_bytes()
    assert result.outputs is not None
    assert result.outputs == {"archive_sha": sha(blob), "notes": "build/NOTES"}
    with tarfile.open(work / "dist/release-1.2.3.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["NOTES", "VERSION"]
    assert statuses["escape"] == "failed"
    assert "leads out of the run's work directory" in (result.step("escape").error or "")
