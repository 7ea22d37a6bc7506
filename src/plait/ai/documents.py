"""Text and metadata out of documents: PDF, DOCX, HTML, e-mail (.eml) and plain text.

:func:`read_document` takes a file's bytes and its name, decides the format from the
name's extension and the content's first bytes (a PDF starts ``%PDF-``, a DOCX is a
ZIP holding ``word/document.xml``, …), and hands it to the reader of that format. A
name that says one format while the content is another is refused, naming the file:
a ``.pdf`` that is really a Word document is more likely a mistake than a wish.

The readers are in their own modules and import their libraries only when that format
is read: ``pypdf`` for PDF and ``python-docx`` for DOCX (both in the ``ai`` extra); HTML
and e-mail need only the standard library. Everything here is defensive about its
input, because documents come from outside — from e-mail, uploads, shared folders:
sizes and page counts are bounded (:class:`Limits`), a DOCX is checked for a zip bomb
before it is parsed, HTML is read by a tokenizer that does not recurse, and nothing is
ever fetched: links, remote images and external relationships stay text.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from plait.errors import PlaitError

Format = Literal["pdf", "docx", "html", "eml", "text"]
FORMATS: tuple[Format, ...] = ("pdf", "docx", "html", "eml", "text")

MB = 1024 * 1024

#: what a format is called in messages
LABELS: dict[str, str] = {
    "pdf": "a PDF",
    "docx": "a Word document (DOCX)",
    "html": "an HTML page",
    "eml": "an e-mail message (.eml)",
    "text": "plain text",
}

_EXTENSIONS: dict[str, Format] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".docm": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".eml": "eml",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".markdown": "text",
    ".rst": "text",
    ".csv": "text",
    ".tsv": "text",
    ".log": "text",
    ".json": "text",
    ".yaml": "text",
    ".yml": "text",
    ".xml": "text",
    ".ini": "text",
}

#: first bytes of formats this module cannot read, for a useful refusal
_FOREIGN: tuple[tuple[bytes, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file (.doc/.xls); save it as .docx"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image (doc.extract_text does no OCR)"),
    (b"\xff\xd8\xff", "a JPEG image (doc.extract_text does no OCR)"),
    (b"GIF8", "a GIF image (doc.extract_text does no OCR)"),
    (b"II*\x00", "a TIFF image (doc.extract_text does no OCR)"),
    (b"MM\x00*", "a TIFF image (doc.extract_text does no OCR)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"{\\rtf", "an RTF document; save it as .docx"),
)

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

#: header names that open an e-mail message (the first line of an .eml is one of them)
_MAIL_HEADERS = frozenset(
    {
        "return-path",
        "received",
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "delivered-to",
        "reply-to",
        "sender",
        "content-type",
        "x-mailer",
        "dkim-signature",
        "arc-seal",
        "authentication-results",
        "x-original-to",
    }
)


class DocumentError(PlaitError):
    """A document could not be read: its format, its size, its content. The message
    names the file and says why."""


class MissingReader(DocumentError):
    """The library that reads this format is not installed."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of a document may be read: the defences against hostile files."""

    #: the file itself
    max_bytes: int = 50 * MB
    #: pages read from a PDF (the rest is left out, with a warning)
    max_pages: int = 1000
    #: characters of text kept (the rest is left out, ``truncated``)
    max_chars: int = 100_000
    #: what the parts of a DOCX may unpack to, together (a zip bomb unpacks to far more)
    max_unpacked: int = 256 * MB
    #: parts in a DOCX
    max_zip_entries: int = 10_000


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """What a reader found. ``pages`` hold the text (one page for formats without
    pages); ``metadata`` has ``title``, ``author``, ``created``, ``modified`` and
    ``page_count`` for every format, and more for some (e-mail headers, attachments)."""

    format: Format
    pages: tuple[Page, ...]
    metadata: dict[str, Any]
    warnings: tuple[str, ...] = ()
    truncated: bool = False

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages if page.text)

    def bounded(self, max_chars: int) -> Document:
        """The document with at most ``max_chars`` characters of text: pages after the
        budget are left out and the last one kept is cut (``truncated``)."""
        budget = max_chars
        pages: list[Page] = []
        cut = False
        for page in self.pages:
            if budget <= 0 and page.text:
                cut = True
                break
            text = page.text[:budget]
            cut = cut or len(text) < len(page.text)
            pages.append(Page(page.number, text))
            budget -= len(text) + (2 if text else 0)  # the blank line that joins pages
        return replace(self, pages=tuple(pages), truncated=self.truncated or cut)


@dataclass
class Found:
    """What a reader collects before it becomes a :class:`Document`."""

    pages: list[Page] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False

    def document(self, format: Format) -> Document:
        meta: dict[str, Any] = {"title": None, "author": None, "created": None, "modified": None}
        meta.update(self.metadata)
        meta.setdefault("page_count", len(self.pages))
        return Document(format, tuple(self.pages), meta, tuple(self.warnings), self.truncated)


# -- detection ----------------------------------------------------------------------------
def detect_format(name: str, data: bytes, declared: str = "auto") -> Format:
    """The format of ``data`` (a file called ``name``): ``declared`` when it is not
    ``auto``, else the extension's, checked against the content either way."""
    sniffed = _sniff(data)
    if declared != "auto":
        for known in FORMATS:
            if declared == known:
                _check_declared(name, known, sniffed)
                return known
        raise DocumentError(f"{name}: unknown format {declared!r} (known: auto, {_known()})")
    by_name = _EXTENSIONS.get(_extension(name))
    if sniffed in ("pdf", "docx"):
        strong: Format = "pdf" if sniffed == "pdf" else "docx"
        if by_name is not None and by_name != strong:
            raise DocumentError(
                f"{name}: the name says {LABELS[by_name]} but the content is {LABELS[strong]}"
            )
        return strong
    if sniffed.startswith("foreign:"):
        raise DocumentError(f"{name}: cannot read {sniffed.removeprefix('foreign:')}")
    if by_name in ("pdf", "docx"):
        raise DocumentError(f"{name}: the name says {LABELS[by_name]} but {_not_it(by_name)}")
    if sniffed == "binary":
        raise DocumentError(
            f"{name}: unsupported format: binary content that is none of {_known()}"
        )
    return by_name or _text_kind(data)


def _check_declared(name: str, declared: Format, sniffed: str) -> None:
    if declared in ("pdf", "docx"):
        if sniffed != declared:
            raise DocumentError(f"{name}: format is {declared} but {_not_it(declared)}")
        return
    if sniffed in ("pdf", "docx"):
        raise DocumentError(f"{name}: format is {declared} but the content is {LABELS[sniffed]}")
    if sniffed.startswith("foreign:"):
        raise DocumentError(f"{name}: cannot read {sniffed.removeprefix('foreign:')}")
    if sniffed == "binary":
        raise DocumentError(f"{name}: format is {declared} but the content is binary, not text")


def _not_it(format: str) -> str:
    if format == "pdf":
        return "the content does not start with %PDF-"
    return "the content is not a ZIP package holding word/document.xml"


def _sniff(data: bytes) -> str:
    """``pdf``, ``docx``, ``foreign:<what>``, ``binary`` or ``text``."""
    if _is_pdf(data):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return "docx" if _is_docx(data) else "foreign:a ZIP archive that is not a Word document"
    for magic, what in _FOREIGN:
        if data.startswith(magic):
            return f"foreign:{what}"
    if _bom(data) is None and b"\x00" in data[:8192]:
        return "binary"
    return "text"


def _is_pdf(data: bytes) -> bool:
    """A PDF starts with ``%PDF-``; readers also accept up to 1 KB of junk before it, so
    such a file counts too when it ends like a PDF (a text that merely mentions
    ``%PDF-`` near its start is still text)."""
    if data.startswith(b"%PDF-"):
        return True
    return b"%PDF-" in data[:1024] and b"%%EOF" in data[-2048:]


def _is_docx(data: bytes) -> bool:
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def _text_kind(data: bytes) -> Format:
    """HTML, e-mail or plain text, by the first characters of text content."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if head.startswith(b"<?xml") and b"<html" in head:
        return "html"  # XHTML
    first = head.split(b"\n", 1)[0]
    key, colon, _ = first.partition(b":")
    if colon and key.strip().decode("ascii", "replace") in _MAIL_HEADERS:
        return "eml"
    return "text"


def _extension(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    return base[dot:] if dot > 0 else ""


def _known() -> str:
    return ", ".join(FORMATS)


# -- text decoding ------------------------------------------------------------------------
def _bom(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def check_encoding(encoding: str) -> str:
    """``encoding``'s canonical name, or ValueError naming it."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None


def decode_text(
    data: bytes, name: str, encoding: str | None, *, hints: Iterable[str] = ()
) -> tuple[str, list[str]]:
    """``data`` as text, and warnings: a byte-order mark decides; else UTF-8; else the
    ``encoding`` the step declares; else ``hints`` (a page's own ``<meta charset>``);
    else Latin-1, which cannot fail, with a warning that the text may be garbled."""
    bom = _bom(data)
    if bom is not None:
        try:
            return data.decode(bom).removeprefix("\ufeff"), []
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{name}: starts with a {bom} byte-order mark but {exc}") from None
    candidates = ["utf-8", *([encoding] if encoding else []), *hints]
    for candidate in candidates:
        try:
            return data.decode(candidate), []
        except (UnicodeDecodeError, LookupError):
            continue
    tried = ", ".join(dict.fromkeys(candidates))
    warning = (
        f"{name} is not valid {tried}; read as Latin-1, so some characters may be wrong "
        "(set encoding: to the file's encoding)"
    )
    return data.decode("latin-1"), [warning]


def clean_lines(text: str) -> str:
    """Trailing spaces off every line, runs of blank lines made one, no blank ends."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")


# -- reading ------------------------------------------------------------------------------
def read_document(
    data: bytes,
    name: str,
    *,
    format: str = "auto",
    limits: Limits | None = None,
    encoding: str | None = None,
    password: str | None = None,
    extract_attachments: bool = False,
    include_headers: bool = False,
) -> Document:
    """Read ``data`` (the content of a file called ``name``) into a :class:`Document`,
    its text bounded by ``limits.max_chars``. DocumentError says what is wrong."""
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise DocumentError(
            f"{name} is {size_text(len(data))}, more than the limit of "
            f"{size_text(limits.max_bytes)} (max_bytes)"
        )
    kind = detect_format(name, data, format)
    if kind == "pdf":
        from plait.ai.documents_office import read_pdf

        found = read_pdf(data, name, limits, password)
    elif kind == "docx":
        from plait.ai.documents_office import read_docx

        found = read_docx(data, name, limits, include_headers=include_headers)
    elif kind == "html":
        from plait.ai.documents_html import read_html

        found = read_html(data, name, encoding)
    elif kind == "eml":
        from plait.ai.documents_email import read_eml

        found = read_eml(data, name, limits, encoding, extract_attachments=extract_attachments)
    else:
        found = read_text(data, name, encoding)
    return found.document(kind).bounded(limits.max_chars)


def read_text(data: bytes, name: str, encoding: str | None) -> Found:
    text, warnings = decode_text(data, name, encoding)
    return Found([Page(1, clean_lines(text))], warnings=warnings)


def missing_reader(name: str, package: str, what: str) -> MissingReader:
    return MissingReader(
        f"{name}: install plait[ai] to read {what} files ({package} is not installed)"
    )


def size_text(count: int) -> str:
    """A byte count for people: ``1.5 MB``."""
    if count >= MB:
        return f"{count / MB:.1f} MB"
    if count >= 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count} bytes"
