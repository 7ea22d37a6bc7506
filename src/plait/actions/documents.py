"""``uses: doc.extract_text`` — text and metadata from a PDF, DOCX, HTML, e-mail or text file.

The readers are in :mod:`plait.ai.documents`; this module finds the file, reads its
bytes within the size limit, and turns what the reader found into the step's outputs.
The work happens in a worker thread (PDF parsing is CPU work), and the heavy libraries
are imported only when a document of their format is read.

Which files a step may read: a path relative to the run's work directory stays inside
it, as for ``uses: file`` (:func:`plait.actions.files.resolve_in_workdir`). An absolute
path is read only inside a directory the operator allows with ``PLAIT_DOC_DIRS`` (a
list separated by ``:``, in the environment of the process that runs the step — not of
the step, which a workflow controls), so a mailbox or an inbox folder can be read in
place without letting any workflow read any file on the machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from plait.actions.base import Action, ActionContext, ActionFailed, ActionInput, ActionResult
from plait.actions.files import relative, resolve_in_workdir
from plait.ai.documents import MB, Document, DocumentError, Limits, check_encoding, read_document

#: the variable naming the directories whose files a step may read by absolute path
DOC_DIRS_VARIABLE = "PLAIT_DOC_DIRS"
DEFAULT_MAX_BYTES = 50 * MB
DEFAULT_MAX_CHARS = 100_000
DEFAULT_MAX_PAGES = 1000


class ExtractTextInput(ActionInput):
    path: str = Field(
        description=(
            "The document: a path relative to the run's work directory, or an absolute path "
            "inside a directory listed in PLAIT_DOC_DIRS."
        )
    )
    format: Literal["auto", "pdf", "docx", "html", "eml", "text"] = Field(
        "auto",
        description=(
            "auto: from the file name and checked against the content; or say which. A "
            "name or format that does not match the content fails the step."
        ),
    )
    max_pages: int = Field(
        DEFAULT_MAX_PAGES, ge=1, le=100_000, description="PDF: read at most this many pages."
    )
    max_chars: int = Field(
        DEFAULT_MAX_CHARS,
        ge=1,
        le=1_000_000,
        description="Keep at most this many characters of text (the rest: truncated).",
    )
    max_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        ge=1,
        le=1024 * MB,
        description="Refuse a file larger than this many bytes (default 50 MB).",
    )
    encoding: str | None = Field(
        None,
        description=(
            "Text, HTML and e-mail: the encoding to use when the content is not UTF-8 and "
            "has no byte-order mark (e.g. cp1252); else Latin-1, with a warning."
        ),
    )
    password: str | None = Field(
        None, description="PDF: the password of an encrypted file (give it from a secret)."
    )
    extract_attachments: bool = Field(
        False,
        description=(
            "E-mail: also read attached PDF, DOCX, HTML, text and e-mail files into "
            "metadata.attachments[i].text."
        ),
    )
    include_headers: bool = Field(
        False, description="DOCX: also the text of page headers and footers."
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        return check_encoding(value) if value else None


class PageOutput(BaseModel):
    number: int
    text: str


class ExtractTextOutput(BaseModel):
    text: str = Field(description="The document's text, pages separated by a blank line.")
    pages: list[PageOutput] = Field(description="Each page's text (one page without pages).")
    metadata: dict[str, Any] = Field(
        description=(
            "title, author, created, modified, page_count; e-mail also from, to, cc, subject, "
            "date, message_id and attachments [{filename, content_type, size, text?}]."
        )
    )
    format: str = Field(description="pdf, docx, html, eml or text.")
    chars: int = Field(description="Characters in text.")
    truncated: bool = Field(description="Text or pages were left out (max_chars, max_pages).")
    warnings: list[str] = Field(description="What was read imperfectly (no text layer, …).")
    path: str
    size: int = Field(description="The file's size in bytes.")
    sha256: str = Field(description="The file's SHA-256, to recognise a document seen before.")


class ExtractTextAction(Action):
    name = "doc.extract_text"
    version = "1"
    description = (
        "Text, pages and metadata from a PDF, DOCX, HTML, e-mail (.eml) or text file, "
        "for the ai.* steps that follow."
    )
    Input = ExtractTextInput
    Output = ExtractTextOutput

    async def execute(self, ctx: ActionContext, input: ExtractTextInput) -> ActionResult:
        if input.password:
            ctx.add_secret(input.password)
        target = resolve_document(ctx.workdir, input.path)
        data = await asyncio.to_thread(read_capped, target, input.path, input.max_bytes)
        limits = Limits(
            max_bytes=input.max_bytes, max_pages=input.max_pages, max_chars=input.max_chars
        )
        try:
            document = await asyncio.to_thread(
                read_document,
                data,
                input.path,
                format=input.format,
                limits=limits,
                encoding=input.encoding,
                password=input.password,
                extract_attachments=input.extract_attachments,
                include_headers=input.include_headers,
            )
        except DocumentError as exc:
            raise ActionFailed(ctx.mask(str(exc)), retryable=False) from None
        outputs = _outputs(document, input.path, data)
        _log(ctx, input.path, document, outputs["chars"])
        return ActionResult(outputs=outputs)


def resolve_document(workdir: Path, path: str) -> Path:
    """The real path of the document ``path`` names, if a step may read it."""
    if not os.path.isabs(path):
        return resolve_in_workdir(workdir, path)
    real = os.path.realpath(path)
    roots = allowed_dirs()
    if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
        hint = (
            f"it is outside the directories in {DOC_DIRS_VARIABLE} ({', '.join(roots)})"
            if roots
            else f"no directory is allowed ({DOC_DIRS_VARIABLE} is not set)"
        )
        raise ActionFailed(
            f"path {path!r} is absolute and {hint}; give a path relative to the run's work "
            f"directory, or ask the operator to allow its directory in {DOC_DIRS_VARIABLE}",
            retryable=False,
        )
    return Path(real)


def allowed_dirs() -> list[str]:
    """The real paths of the directories listed in ``PLAIT_DOC_DIRS``."""
    listed = os.environ.get(DOC_DIRS_VARIABLE, "")
    return [os.path.realpath(entry) for entry in listed.split(os.pathsep) if entry.strip()]


def read_capped(target: Path, name: str, limit: int) -> bytes:
    """The file's bytes, or ActionFailed when it is missing, not a file, or too large."""
    try:
        info = os.stat(target)
        if stat.S_ISDIR(info.st_mode):
            raise ActionFailed(f"{name} is a directory, not a document", retryable=False)
        if not stat.S_ISREG(info.st_mode):
            raise ActionFailed(f"{name} is not a regular file", retryable=False)
        if info.st_size > limit:
            raise ActionFailed(_too_large(name, info.st_size, limit), retryable=False)
        with open(target, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise ActionFailed(f"{name} does not exist", retryable=False) from None
    except PermissionError:
        raise ActionFailed(f"{name} cannot be read: permission denied", retryable=False) from None
    except OSError as exc:
        raise ActionFailed(f"{name} cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew while we looked
        raise ActionFailed(_too_large(name, len(data), limit), retryable=False)
    return data


def _too_large(name: str, size: int, limit: int) -> str:
    from plait.ai.documents import size_text

    return (
        f"{name} is {size_text(size)}, more than the limit of {size_text(limit)} "
        "(raise max_bytes to read it)"
    )


def _outputs(document: Document, path: str, data: bytes) -> dict[str, Any]:
    text = document.text
    return {
        "text": text,
        "pages": [{"number": page.number, "text": page.text} for page in document.pages],
        "metadata": document.metadata,
        "format": document.format,
        "chars": len(text),
        "truncated": document.truncated,
        "warnings": list(document.warnings),
        "path": relative(path) if not os.path.isabs(path) else path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _log(ctx: ActionContext, path: str, document: Document, chars: int) -> None:
    count = document.metadata.get("page_count")
    pages = f", {count} page{'s' if count != 1 else ''}" if document.format == "pdf" else ""
    cut = " (truncated)" if document.truncated else ""
    ctx.log("system", f"read {path}: {document.format}{pages}, {chars} characters{cut}")
    for warning in document.warnings:
        ctx.log("system", f"warning: {warning}")
