"""PDF (with pypdf) and DOCX (with python-docx), each imported only when read.

**PDF**: the text layer of each page, in order, up to ``max_pages`` and the character
budget. A page with no text layer — a scan — gives an empty page and a warning: there is
no OCR here. An encrypted PDF is opened with the step's ``password`` (or the empty one,
which many "protected" PDFs use); without the right one the step fails saying so.
pypdf bounds what a compressed stream may expand to, and refuses more (a decompression
bomb) with an error this module reports as such.

**DOCX**: paragraphs and tables in document order (a table row is a line, its cells
separated by tabs), optionally the page headers and footers. Before python-docx opens
the package, the sizes its ZIP directory declares are checked: a DOCX whose parts would
unpack to more than ``max_unpacked`` is refused as a possible zip bomb (Python's zipfile
never inflates a part past its declared size, so the check cannot be lied to).
python-docx parses XML without resolving entities and never loads external
relationships (linked images, hyperlinks), so nothing is fetched.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from plait.ai.documents import (
    DocumentError,
    Found,
    Limits,
    Page,
    clean_lines,
    missing_reader,
    size_text,
)

if TYPE_CHECKING:
    from docx.document import Document as DocxDocument
    from docx.table import Table, _Cell
    from pypdf import PdfReader

#: longest metadata value kept (a title is not a megabyte)
_MAX_FIELD = 1000
#: tables inside table cells read this deep
_MAX_TABLE_NESTING = 4
#: empty pages named in the warning about a missing text layer
_PAGES_NAMED = 10
#: pypdf's notes about a damaged file quoted in the warning
_NOTES_QUOTED = 3


# -- PDF ----------------------------------------------------------------------------------
def read_pdf(data: bytes, name: str, limits: Limits, password: str | None) -> Found:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise missing_reader(name, "pypdf", "PDF") from None
    notes: list[str] = []
    with _pypdf_notes(notes):
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted:
                _decrypt(reader, name, password)
            count = len(reader.pages)
        except DocumentError:
            raise
        except Exception as exc:  # a hostile or broken file can make pypdf raise anything
            raise DocumentError(f"{name}: not a readable PDF: {_reason(exc)}") from exc
        found = Found(metadata={**_pdf_metadata(reader), "page_count": count})
        _pdf_pages(reader, name, count, limits, found)
    if notes:
        quoted = "; ".join(dict.fromkeys(notes[:_NOTES_QUOTED]))
        more = f" (and {len(notes) - _NOTES_QUOTED} more)" if len(notes) > _NOTES_QUOTED else ""
        found.warnings.insert(0, f"{name}: the PDF is damaged; pypdf repaired: {quoted}{more}")
    return found


class _PypdfNotes(logging.Handler):
    """pypdf reports what it repaired in a damaged file as log warnings. While this
    thread reads a document they are collected as the document's warnings (the step's
    output, not the process's stderr); any other time they go on to the root logger, as
    they would have without this handler."""

    local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        sink: list[str] | None = getattr(self.local, "sink", None)
        if sink is None:
            logging.getLogger().handle(record)
        else:
            sink.append(" ".join(record.getMessage().split())[:200])


_notes_lock = threading.Lock()


@contextmanager
def _pypdf_notes(sink: list[str]) -> Iterator[None]:
    with _notes_lock:
        logger = logging.getLogger("pypdf")
        if not any(isinstance(h, _PypdfNotes) for h in logger.handlers):
            logger.addHandler(_PypdfNotes())
            logger.propagate = False
    _PypdfNotes.local.sink = sink
    try:
        yield
    finally:
        _PypdfNotes.local.sink = None


def _decrypt(reader: PdfReader, name: str, password: str | None) -> None:
    from pypdf.errors import DependencyError

    try:
        opened = reader.decrypt(password or "")
    except DependencyError as exc:
        raise DocumentError(f"{name}: cannot decrypt this PDF: {exc}") from None
    if opened:
        return
    if password:
        raise DocumentError(f"{name}: the PDF is encrypted and the password given does not open it")
    raise DocumentError(
        f"{name}: the PDF is encrypted with a password; give it as password: "
        "(from a secret) to read the file"
    )


def _pdf_pages(reader: PdfReader, name: str, count: int, limits: Limits, found: Found) -> None:
    from pypdf.errors import LimitReachedError

    chars = 0
    empty: list[int] = []
    for number in range(1, count + 1):
        if number > limits.max_pages:
            found.truncated = True
            found.warnings.append(
                f"{name}: read the first {limits.max_pages} of {count} pages (max_pages)"
            )
            break
        if chars > limits.max_chars:
            found.truncated = True  # the text is full: the other pages would be cut anyway
            break
        try:
            text = clean_lines(reader.pages[number - 1].extract_text() or "")
        except LimitReachedError as exc:
            raise DocumentError(
                f"{name}: page {number} expands beyond pypdf's limits "
                f"(a decompression bomb?): {exc}"
            ) from None
        except Exception as exc:
            found.warnings.append(f"{name}: page {number} could not be read: {_reason(exc)}")
            text = ""
        if not text.strip():
            empty.append(number)
        chars += len(text)
        found.pages.append(Page(number, text))
    if empty:
        found.warnings.append(_no_text_layer(name, empty, len(found.pages)))


def _no_text_layer(name: str, empty: list[int], read: int) -> str:
    if len(empty) == read:
        return (
            f"{name}: no page has a text layer (a scanned document?); "
            "doc.extract_text does no OCR, so the text is empty"
        )
    listed = ", ".join(str(n) for n in empty[:_PAGES_NAMED])
    more = f" and {len(empty) - _PAGES_NAMED} more" if len(empty) > _PAGES_NAMED else ""
    pages = "pages" if len(empty) > 1 else "page"
    have = "have" if len(empty) > 1 else "has"
    return f"{name}: {pages} {listed}{more} {have} no text layer (scanned?); no OCR is done"


def _pdf_metadata(reader: PdfReader) -> dict[str, Any]:
    try:
        info = reader.metadata
    except Exception:  # a broken Info dictionary is not a reason to lose the text
        return {}
    if info is None:
        return {}
    meta: dict[str, Any] = {}
    fields = {
        "title": "title",
        "author": "author",
        "subject": "subject",
        "producer": "producer",
        "creator": "creator",
        "created": "creation_date",
        "modified": "modification_date",
    }
    for key, attribute in fields.items():
        try:
            value = getattr(info, attribute)
        except Exception:  # a date pypdf cannot parse
            value = None
        meta[key] = _field(value)
    return meta


# -- DOCX ---------------------------------------------------------------------------------
def read_docx(data: bytes, name: str, limits: Limits, *, include_headers: bool) -> Found:
    check_zip(data, name, limits)
    try:
        import docx
    except ImportError:
        raise missing_reader(name, "python-docx", "DOCX") from None
    try:
        document = docx.Document(io.BytesIO(data))
        lines = list(_docx_lines(document, include_headers))
        meta = _docx_metadata(document)
    except Exception as exc:  # a broken package can make python-docx raise anything
        raise DocumentError(f"{name}: not a readable Word document: {_reason(exc)}") from exc
    return Found([Page(1, clean_lines("\n".join(lines)))], metadata=meta)


def check_zip(data: bytes, name: str, limits: Limits) -> None:
    """Refuse a ZIP package whose parts would unpack to too much (a zip bomb)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DocumentError(f"{name}: not a readable ZIP package: {exc}") from None
    if len(infos) > limits.max_zip_entries:
        raise DocumentError(
            f"{name}: has {len(infos)} parts, more than {limits.max_zip_entries}: "
            "refusing a possible zip bomb"
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_unpacked:
        raise DocumentError(
            f"{name}: its parts would unpack to {size_text(total)}, more than "
            f"{size_text(limits.max_unpacked)}: refusing a possible zip bomb"
        )


def _docx_lines(document: DocxDocument, include_headers: bool) -> Iterator[str]:
    headers: list[str] = []
    footers: list[str] = []
    if include_headers:
        for section in document.sections:
            headers.extend(_blocks(section.header.iter_inner_content(), 0))
            footers.extend(_blocks(section.footer.iter_inner_content(), 0))
    yield from dict.fromkeys(headers)  # each section repeats the same header
    if headers:
        yield ""
    yield from _blocks(document.iter_inner_content(), 0)
    if footers:
        yield ""
    yield from dict.fromkeys(footers)


def _blocks(blocks: Iterable[Any], depth: int) -> Iterator[str]:
    from docx.table import Table

    for block in blocks:
        if isinstance(block, Table):
            yield ""
            yield from _table(block, depth)
            yield ""
        else:
            text = block.text
            style = _style_name(block)
            yield f"- {text}" if text and style.startswith("list") else text


def _table(table: Table, depth: int) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell comes once per grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(_cell_text(cell, depth))
        yield "\t".join(cells)


def _cell_text(cell: _Cell, depth: int) -> str:
    from docx.table import Table

    parts: list[str] = []
    for block in cell.iter_inner_content():
        if isinstance(block, Table):
            if depth + 1 < _MAX_TABLE_NESTING:
                parts.extend(_table(block, depth + 1))
        else:
            parts.append(block.text)
    return " ".join(" ".join(part.split()) for part in parts if part.strip())


def _style_name(paragraph: Any) -> str:
    try:
        return str(paragraph.style.name or "").lower()
    except Exception:  # a paragraph that names a style the package lacks
        return ""


def _docx_metadata(document: DocxDocument) -> dict[str, Any]:
    props = document.core_properties
    return {
        "title": _field(props.title),
        "author": _field(props.author),
        "created": _field(props.created),
        "modified": _field(props.modified),
        "subject": _field(props.subject),
        "last_modified_by": _field(props.last_modified_by),
    }


# -- shared -------------------------------------------------------------------------------
def _field(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    text = " ".join(str(value).split())[:_MAX_FIELD]
    return text or None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
