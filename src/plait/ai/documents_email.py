"""E-mail messages (``.eml``, RFC 5322 with MIME) with the standard library.

The text is the message's body: its plain-text part when it has one, else its HTML part
turned into text by :mod:`plait.ai.documents_html`. The headers become metadata
(``from``, ``to``, ``cc``, ``subject``, ``date``, ``message_id``; ``title`` is the
subject and ``author`` the sender), and every attachment is listed with its file name,
content type and size. With ``extract_attachments`` the attachments that are documents
(PDF, DOCX, HTML, text, another e-mail) are read too, sharing the step's character
budget with the body; one that cannot be read says why in its ``error`` and does not
fail the message.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from plait.ai.documents import (
    DocumentError,
    Found,
    Limits,
    Page,
    clean_lines,
    decode_text,
    read_document,
)

if TYPE_CHECKING:
    from email.message import EmailMessage, Message

#: how many attachments are listed (a message with more says so in a warning)
MAX_ATTACHMENTS = 200
_ADDRESS_HEADERS = ("to", "cc")


def read_eml(
    data: bytes,
    name: str,
    limits: Limits,
    encoding: str | None,
    *,
    extract_attachments: bool,
) -> Found:
    from email import policy
    from email.message import EmailMessage
    from email.parser import BytesParser

    message = BytesParser(policy=policy.default, _class=EmailMessage).parsebytes(data)
    found = Found(metadata=_headers(message))
    if message.defects:
        found.warnings.append(
            f"{name}: the message is malformed ({_defects(message)}); read what could be read"
        )
    body = _body(message, name, encoding, found.warnings)
    found.pages.append(Page(1, body))
    budget = limits.max_chars - len(body)
    attachments: list[dict[str, Any]] = []
    for index, part in enumerate(message.iter_attachments()):
        if index >= MAX_ATTACHMENTS:
            found.warnings.append(f"{name}: only the first {MAX_ATTACHMENTS} attachments listed")
            break
        entry, content = _attachment(part, index)
        if extract_attachments:
            entry["text"] = None
            if content is not None and _is_document(entry):
                budget = _extract(entry, content, name, limits, encoding, budget, found)
        attachments.append(entry)
    found.metadata["attachments"] = attachments
    return found


# -- headers ------------------------------------------------------------------------------
def _headers(message: EmailMessage) -> dict[str, Any]:
    sender = _header(message, "from")
    subject = _header(message, "subject")
    date = _date(message)
    meta: dict[str, Any] = {
        "title": subject,
        "author": sender,
        "created": date,
        "from": sender,
        "to": _addresses(message, "to"),
        "cc": _addresses(message, "cc"),
        "subject": subject,
        "date": date,
        "message_id": (_header(message, "message-id") or "").strip() or None,
    }
    return meta


def _header(message: Message, key: str) -> str | None:
    """A header as decoded text; a header too broken to parse is given as it was sent."""
    try:
        value = message.get(key)
    except (ValueError, TypeError, IndexError, AttributeError):
        value = next((v for k, v in message.raw_items() if k.lower() == key), None)
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _addresses(message: Message, key: str) -> list[str]:
    try:
        header = message.get(key)
        addresses = getattr(header, "addresses", None)
    except (ValueError, TypeError, IndexError, AttributeError):
        header, addresses = None, None
    if addresses is not None:
        return [str(address) for address in addresses]
    text = _header(message, key)
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def _date(message: Message) -> str | None:
    try:
        header = message.get("date")
        moment = getattr(header, "datetime", None)
    except (ValueError, TypeError, IndexError, AttributeError):
        moment = None
    if moment is not None:
        return str(moment.isoformat())
    return _header(message, "date")


def _defects(message: Message) -> str:
    names = sorted({type(defect).__name__ for defect in message.defects})
    return ", ".join(names[:5])


# -- body ---------------------------------------------------------------------------------
def _body(message: EmailMessage, name: str, encoding: str | None, warnings: list[str]) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        warnings.append(f"{name}: the message has no text or HTML body")
        return ""
    text = _part_text(part, name, encoding, warnings)
    if part.get_content_subtype() == "html":
        from plait.ai.documents_html import html_to_text

        return html_to_text(text)
    return clean_lines(text)


def _part_text(part: Message, name: str, encoding: str | None, warnings: list[str]) -> str:
    """A text part's content; a part whose charset is unknown or wrong is decoded the way
    plain files are (UTF-8, the declared ``encoding``, then Latin-1 with a warning)."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, ValueError, KeyError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text, problems = decode_text(payload, f"{name} (body)", encoding)
    warnings.extend(problems)
    return text


# -- attachments --------------------------------------------------------------------------
def _attachment(part: Message, index: int) -> tuple[dict[str, Any], bytes | None]:
    content_type = part.get_content_type()
    filename = part.get_filename() or f"attachment-{index + 1}"
    content = _payload(part)
    entry: dict[str, Any] = {
        "filename": filename,
        "content_type": content_type,
        "size": len(content) if content is not None else 0,
    }
    return entry, content


def _payload(part: Message) -> bytes | None:
    if part.get_content_type() == "message/rfc822":
        from email.message import Message

        inner = part.get_payload()
        message = inner[0] if isinstance(inner, list) and inner else None
        if not isinstance(message, Message):
            return None
        try:
            return bytes(message.as_bytes())
        except (ValueError, TypeError, LookupError, UnicodeError):
            return None
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None


def _extract(
    entry: dict[str, Any],
    content: bytes,
    name: str,
    limits: Limits,
    encoding: str | None,
    budget: int,
    found: Found,
) -> int:
    """Read one attachment into ``entry["text"]``; returns the character budget left.
    An attached e-mail gives its body (its own attachments are listed, not read)."""
    filename = entry["filename"]
    label = filename if "." in filename else f"{filename}{_extension(entry['content_type'])}"
    try:
        document = read_document(
            content,
            label,
            limits=replace(limits, max_chars=max(budget, 0)),
            encoding=encoding,
            extract_attachments=False,
        )
    except DocumentError as exc:
        entry["error"] = str(exc)
        found.warnings.append(f"{name}: attachment {filename} not read: {exc}")
        return budget
    entry["text"] = document.text
    entry["format"] = document.format
    if document.truncated:
        entry["truncated"] = True
        found.truncated = True
    found.warnings.extend(f"{name}, attachment {filename}: {w}" for w in document.warnings)
    return budget - len(entry["text"])


_DOCUMENT_TYPES = {
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "text/html": ".html",
    "text/plain": ".txt",
    "text/csv": ".csv",
    "text/markdown": ".md",
    "message/rfc822": ".eml",
}
_DOCUMENT_EXTENSIONS = frozenset({".pdf", ".docx", ".html", ".htm", ".txt", ".md", ".csv", ".eml"})


def _is_document(entry: dict[str, Any]) -> bool:
    """Whether an attachment is one of the formats read here (pictures, archives and
    the like are listed, not read)."""
    filename = str(entry["filename"]).lower()
    suffix = filename[filename.rfind(".") :] if "." in filename else ""
    return entry["content_type"] in _DOCUMENT_TYPES or suffix in _DOCUMENT_EXTENSIONS


def _extension(content_type: str) -> str:
    """A file extension for a nameless attachment, so its format can be told."""
    return _DOCUMENT_TYPES.get(content_type, "")
