"""``doc.extract_text`` and its readers on real files.

PDFs and Word documents are built here with fpdf2 and python-docx (and hostile ones by
hand: a zip bomb, a ZIP directory that lies, an encrypted and a scanned PDF, entity
tricks); HTML and e-mail samples are written by hand in ``tests/ai/fixtures``. The
action runs as a step would — with a work directory, through a real workflow on a real
SQLite store, and through the real ``plait`` command — and every bad input ends as a
failed step whose error names the file and says why.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from plait.actions.base import ActionContext, ActionFailed
from plait.actions.documents import ExtractTextAction, ExtractTextInput, ExtractTextOutput
from plait.ai.documents import Document, DocumentError, Limits, read_document
from plait.local import LocalSession
from plait.model import load_workflow
from plait.settings import Settings

from .fixtures import make

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def read(data: bytes, name: str, **kw: Any) -> Document:
    return read_document(data, name, **kw)


def fails(data: bytes, name: str, match: str, **kw: Any) -> str:
    with pytest.raises(DocumentError, match=match) as caught:
        read_document(data, name, **kw)
    return str(caught.value)


# -- PDF ----------------------------------------------------------------------------------
def test_pdf_text_page_by_page_with_metadata() -> None:
    data = make.pdf(
        ["Invoice INV-7\nTotal: EUR 12.00", "Terms: 30 days", "Thank you"],
        title="Invoice INV-7",
        author="ACME GmbH",
    )
    doc = read(data, "in/invoice.pdf")
    assert doc.format == "pdf"
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert doc.pages[0].text == "Invoice INV-7\nTotal: EUR 12.00"
    assert doc.text == "Invoice INV-7\nTotal: EUR 12.00\n\nTerms: 30 days\n\nThank you"
    assert doc.metadata["title"] == "Invoice INV-7"
    assert doc.metadata["author"] == "ACME GmbH"
    assert doc.metadata["page_count"] == 3
    assert doc.metadata["created"].startswith("20")  # an ISO time
    assert doc.warnings == ()
    assert doc.truncated is False


def test_pdf_page_and_character_limits_cut_and_say_so() -> None:
    data = make.pdf([f"page {n} " + "x" * 50 for n in range(1, 6)])
    doc = read(data, "long.pdf", limits=Limits(max_pages=2))
    assert [p.number for p in doc.pages] == [1, 2]
    assert doc.metadata["page_count"] == 5
    assert doc.truncated
    assert doc.warnings == ("long.pdf: read the first 2 of 5 pages (max_pages)",)
    doc = read(data, "long.pdf", limits=Limits(max_chars=80))
    assert doc.truncated
    assert len(doc.text) <= 80
    assert doc.pages[0].text.startswith("page 1 ")
    assert doc.pages[-1].number == 2  # the second page is cut, the rest left out


def test_scanned_pdf_gives_empty_pages_and_a_warning_not_ocr() -> None:
    doc = read(make.scanned_pdf(3), "scan.pdf")
    assert [p.text for p in doc.pages] == ["", "", ""]
    assert doc.text == ""
    assert len(doc.warnings) == 1
    assert "no page has a text layer" in doc.warnings[0]
    assert "no OCR" in doc.warnings[0]
    mixed = read(make.pdf(["typed", "", "typed too"], blank_pages=[2]), "mixed.pdf")
    assert mixed.text == "typed\n\ntyped too"
    assert mixed.warnings == ("mixed.pdf: page 2 has no text layer (scanned?); no OCR is done",)


def test_encrypted_pdf_needs_its_password() -> None:
    data = make.pdf(["salary: 100"], password="s3cret")
    fails(data, "pay.pdf", r"^pay\.pdf: the PDF is encrypted with a password; give it as password")
    fails(data, "pay.pdf", "the password given does not open it", password="wrong")
    assert read(data, "pay.pdf", password="s3cret").text == "salary: 100"


def test_broken_pdf_is_a_clear_failure() -> None:
    data = make.pdf(["hello"])
    message = fails(data[: len(data) // 3], "cut.pdf", r"^cut\.pdf: not a readable PDF: ")
    assert "Traceback" not in message


def test_a_damaged_pdf_pypdf_can_repair_is_read_with_a_warning(
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = re.sub(rb"startxref\s+\d+", b"startxref\n12", make.pdf(["hello"]))
    doc = read(data, "damaged.pdf")
    assert doc.text == "hello"
    assert doc.warnings[0].startswith("damaged.pdf: the PDF is damaged; pypdf repaired: ")
    assert "startxref" in doc.warnings[0]
    assert capfd.readouterr().err == ""  # the step's warning, not the process's stderr


def test_a_missing_pdf_library_says_to_install_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pdf, docx = make.pdf(["x"]), make.docx(["x"])
    monkeypatch.setitem(sys.modules, "pypdf", None)  # import pypdf now raises ImportError
    monkeypatch.setitem(sys.modules, "docx", None)
    fails(
        pdf, "a.pdf", r"^a\.pdf: install plait\[ai\] to read PDF files \(pypdf is not installed\)$"
    )
    fails(docx, "a.docx", r"install plait\[ai\] to read DOCX files \(python-docx is not")


# -- DOCX ---------------------------------------------------------------------------------
def test_docx_paragraphs_and_tables_in_document_order() -> None:
    data = make.docx(
        [
            "Purchase order 4471",
            [["Item", "Qty"], ["Paper", "20"], ["Toner", "2"]],
            "- Deliver to gate 3",
            "Signed, Ada",
        ],
        title="PO 4471",
        author="Ada",
        header="ACME confidential",
        footer="page footer",
    )
    doc = read(data, "po.docx")
    assert doc.format == "docx"
    assert doc.text == (
        "Purchase order 4471\n\nItem\tQty\nPaper\t20\nToner\t2\n\n- Deliver to gate 3\nSigned, Ada"
    )
    assert doc.metadata["title"] == "PO 4471"
    assert doc.metadata["author"] == "Ada"
    assert doc.metadata["page_count"] == 1
    with_headers = read(data, "po.docx", include_headers=True).text
    assert with_headers.startswith("ACME confidential\n\nPurchase order 4471")
    assert with_headers.endswith("Signed, Ada\n\npage footer")


def test_zip_bomb_docx_is_refused_before_it_is_inflated() -> None:
    bomb = make.zip_bomb_docx(300)  # 300 MB of XML from about 1 MB
    assert len(bomb) < 2 * 1024 * 1024
    fails(bomb, "bomb.docx", r"unpack to 300\.0 MB, more than 256\.0 MB: refusing a possible zip")
    # a directory that claims 2 GB is refused the same way (zipfile never inflates past it)
    fails(make.lying_docx(2**31 - 1), "lie.docx", "refusing a possible zip bomb")
    fails(make.docx(["ok"]), "small.docx", "refusing", limits=Limits(max_unpacked=1000))


def _docx_with_doctype(doctype: str, text: str) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(make.docx(["hello"])))
    xml = source.read("word/document.xml").decode()
    end = xml.index("?>") + 2
    xml = xml[:end] + doctype + xml[end:].replace(">hello<", f">{text}<")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = xml if info.filename == "word/document.xml" else source.read(info.filename)
            target.writestr(info.filename, body)
    return out.getvalue()


def test_docx_entities_are_never_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    external = f'<!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file://{secret}">]>'
    doc = read(_docx_with_doctype(external, "hello &xxe;"), "xxe.docx")
    assert "TOP-SECRET" not in doc.text
    assert doc.text.startswith("hello")
    laughs = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10 if n else "lol"}">' for n in range(9))
    bomb = _docx_with_doctype(f"<!DOCTYPE w:document [{laughs}]>", "&l8;")
    fails(bomb, "laughs.docx", r"^laughs\.docx: not a readable Word document: ")


# -- HTML ---------------------------------------------------------------------------------
def test_html_keeps_what_a_reader_sees() -> None:
    doc = read((FIXTURES / "order-confirmation.html").read_bytes(), "order.html")
    assert doc.format == "html"
    assert doc.metadata["title"] == "Order confirmation – #4471"
    assert doc.metadata["author"] == "Shop Team"
    assert doc.metadata["language"] == "en"
    lines = doc.text.splitlines()
    assert lines[0] == "Thank you for your order"
    assert "Hello Ada," in lines
    assert "we have received your order #4471 and will ship it within two days." in lines
    assert "Café crème beans\t2\t€12.50" in lines
    assert "1. Packed" in lines
    assert "2. Shipped" in lines
    assert "  Tracking:  TRK-0001" in lines  # <pre> keeps its spaces
    for hidden in ("do-not-extract", "My account", "preheader", "more beans", "template text"):
        assert hidden not in doc.text, hidden
    assert "enable JavaScript" not in doc.text
    assert "body {" not in doc.text


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Recorder", (_Recorder,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_a_document_points_at_is_fetched(recorder: tuple[str, list[str]]) -> None:
    url, hits = recorder
    page = (
        f'<html><head><link rel="stylesheet" href="{url}/a.css"><script src="{url}/s.js">'
        f'</script></head><body><img src="{url}/pixel.gif"><iframe src="{url}/frame">'
        f'</iframe><a href="{url}/link">a link</a></body></html>'
    ).encode()
    assert read(page, "p.html").text == "a link"
    mail = (
        "From: a@b.example\nSubject: s\nContent-Type: text/html\n\n"
        f'<p>hi</p><img src="{url}/open.gif">'
    ).encode()
    assert read(mail, "m.eml").text == "hi"
    assert read(make.pdf([f"see {url}/x"]), "u.pdf").text == f"see {url}/x"
    assert hits == []


def test_deeply_nested_html_is_just_long() -> None:
    depth = 200_000
    page = ("<div><span>" * depth + "deep" + "</span></div>" * depth).encode()
    assert read(page, "deep.html").text == "deep"
    lists = ("<ul><li>" * 500 + "x" + "</li></ul>" * 500).encode()
    text = read(lists, "lists.html").text
    assert text.endswith("                - x")  # indented, but not 500 levels deep
    assert len(text) < 20_000


def test_html_charset_from_its_meta_tag() -> None:
    page = '<html><head><meta charset="windows-1252"></head><body>café € 5</body></html>'
    assert read(page.encode("cp1252"), "p.html").text == "café € 5"


# -- e-mail -------------------------------------------------------------------------------
def test_eml_plain_body_headers_and_attachments() -> None:
    data = (FIXTURES / "ticket-with-attachments.eml").read_bytes()
    doc = read(data, "ticket.eml")
    assert doc.format == "eml"
    assert doc.text.startswith("Hello,\n\nour card was charged twice for invoice INV-88")
    assert "(échéance 10 March)" in doc.text  # its iso-8859-1 part decoded
    assert "HTML part" not in doc.text  # the plain alternative is preferred
    meta = doc.metadata
    assert meta["from"] == meta["author"] == "Accounts Payable <ap@globex.example>"
    assert meta["to"] == ["billing@plait.example", "Sam Doe <sam@plait.example>"]
    assert meta["cc"] == ["finance@globex.example"]
    assert meta["subject"] == meta["title"] == "Invoice INV-88 was charged twice"
    assert meta["date"] == meta["created"] == "2026-03-11T16:02:11-05:00"
    assert meta["message_id"] == "<inv88.twice@globex.example>"
    assert meta["attachments"] == [
        {"filename": "payments.csv", "content_type": "text/csv", "size": 50},
        {"filename": "logo.png", "content_type": "image/png", "size": 70},
        {"filename": "original.eml", "content_type": "message/rfc822", "size": 168},
    ]


def test_eml_attachments_read_on_request() -> None:
    data = (FIXTURES / "ticket-with-attachments.eml").read_bytes()
    doc = read(data, "ticket.eml", extract_attachments=True)
    csv, logo, original = doc.metadata["attachments"]
    assert csv["text"] == "date,amount\n2026-03-10,1250.00\n2026-03-10,1250.00"
    assert logo["text"] is None  # a picture is listed, not read
    assert "error" not in logo
    assert original["text"] == "Please find your invoice INV-88 for USD 1,250.00."
    assert original["format"] == "eml"


def test_eml_attached_documents_and_a_broken_one() -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "ap@globex.example"
    message["Subject"] = "invoices"
    message.set_content("Two invoices attached.")
    pdf_type = ("application", "pdf")
    message.add_attachment(make.pdf(["Invoice A total EUR 5.00"]), *pdf_type, filename="a.pdf")
    docx_type = ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document")
    message.add_attachment(make.docx(["Invoice B"]), *docx_type, filename="b.docx")
    message.add_attachment(b"not a pdf at all", *pdf_type, filename="c.pdf")
    doc = read(bytes(message), "mail.eml", extract_attachments=True)
    a, b, c = doc.metadata["attachments"]
    assert a["text"] == "Invoice A total EUR 5.00"
    assert b["text"] == "Invoice B"
    assert c["text"] is None
    assert "c.pdf: the name says a PDF but the content does not start with %PDF-" in c["error"]
    assert any("attachment c.pdf not read" in w for w in doc.warnings)
    # the attachments share the step's character budget with the body
    small = read(bytes(message), "mail.eml", extract_attachments=True, limits=Limits(max_chars=30))
    assert small.truncated
    assert sum(len(x["text"] or "") for x in small.metadata["attachments"]) <= 30


def test_eml_with_only_html_is_converted() -> None:
    doc = read((FIXTURES / "ticket-html-only.eml").read_bytes(), "ticket.eml")
    assert doc.text == (
        "Hello,\n\nsince yesterday I cannot log in to my account. The password reset e-mail "
        "never arrives – I tried three times.\n\nThanks,\nLéa"
    )
    assert doc.metadata["from"] == "Léa Martin <lea@customer.example>"
    assert doc.metadata["subject"] == "Cannot log in – password reset broken"
    assert doc.metadata["attachments"] == []


# -- plain text and encodings -------------------------------------------------------------
def test_text_encodings_bom_utf8_declared_then_latin1() -> None:
    text = "Grüße – 5 €"
    assert read(text.encode("utf-16"), "a.txt").text == text  # with its BOM
    assert read(b"\xef\xbb\xbf" + text.encode(), "a.txt").text == text
    assert read(text.encode(), "a.txt").text == text
    declared = read(text.encode("cp1252"), "a.txt", encoding="cp1252")
    assert (declared.text, declared.warnings) == (text, ())
    fallback = read("Grüße".encode("latin-1"), "a.txt")
    assert fallback.text == "Grüße"
    assert fallback.warnings == (
        "a.txt is not valid utf-8; read as Latin-1, so some characters may be wrong "
        "(set encoding: to the file's encoding)",
    )
    assert read(b"line 1  \r\nline 2\r\n\r\n\r\n\r\nline 3\n", "a.log").text == (
        "line 1\nline 2\n\nline 3"
    )


# -- formats and limits -------------------------------------------------------------------
def test_format_from_content_when_the_name_says_nothing() -> None:
    assert read(make.pdf(["x"]), "upload").format == "pdf"
    assert read(make.docx(["x"]), "upload.bin").format == "docx"
    assert read(b"<!DOCTYPE html><p>x</p>", "upload").format == "html"
    assert read(b"From: a@b.example\nSubject: s\n\nbody", "upload").format == "eml"
    assert read(b"just words", "upload").format == "text"
    assert read(b"<p>x</p>", "notes.txt").format == "text"  # the name decides between texts
    mentions = b"Our upload check rejects files that start with %PDF-1.7. Why?"
    assert read(mentions, "ticket.txt").format == "text"
    assert read(b"junk before\n" + make.pdf(["x"]), "late.pdf").text == "x"


DOCX = "a Word document (DOCX)"
NOT_PDF = "the content does not start with %PDF-"


@pytest.mark.parametrize(
    ("data", "name", "kw", "message"),
    [
        (b"%PDF-", "a.docx", {}, f"a.docx: the name says {DOCX} but the content is a PDF"),
        (b"hello", "a.pdf", {}, f"a.pdf: the name says a PDF but {NOT_PDF}"),
        (b"hello", "a.docx", {}, f"a.docx: the name says {DOCX} but the content is not a ZIP"),
        (b"%PDF-", "a.txt", {}, "a.txt: the name says plain text but the content is a PDF"),
        (b"%PDF-", "a.bin", {"format": "html"}, "a.bin: format is html but the content is a PDF"),
        (b"text", "a.bin", {"format": "pdf"}, f"a.bin: format is pdf but {NOT_PDF}"),
        (b"text", "a.bin", {"format": "docx"}, "a.bin: format is docx but the content is not"),
        (b"\x00\x01\x02binary", "blob.dat", {"format": "text"}, "blob.dat: format is text but"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1rest", "old.doc", {}, "old.doc: cannot read a legacy"),
        (b"\x89PNG\r\n\x1a\nxxxx", "scan.png", {}, "scan.png: cannot read a PNG image"),
        (b"\x00\x01\x02binary", "blob.dat", {}, "blob.dat: unsupported format: binary content"),
        (b"x", "a.txt", {"format": "odt"}, "a.txt: unknown format 'odt'"),
    ],
)
def test_mismatched_and_unsupported_files_fail_naming_the_file(
    data: bytes, name: str, kw: dict[str, Any], message: str
) -> None:
    if data == b"%PDF-":
        data = make.pdf(["x"])
    fails(data, name, "^" + re.escape(message), **kw)


def test_a_zip_that_is_not_a_word_document() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    fails(out.getvalue(), "sheet.xlsx", "cannot read a ZIP archive that is not a Word document")


def test_size_limit() -> None:
    fails(
        b"x" * 101,
        "big.txt",
        r"big\.txt is 101 bytes, more than the limit of 100 bytes",
        limits=Limits(max_bytes=100),
    )


# -- the action ---------------------------------------------------------------------------
def make_ctx(workdir: Path, lines: list[str] | None = None) -> ActionContext:
    sink = lines if lines is not None else []
    return ActionContext(
        run_id="run-1",
        workflow="wf",
        step="read",
        attempt=1,
        workdir=workdir,
        env={},
        log=lambda stream, line: sink.append(line),
        mask=lambda text: text,
    )


async def extract(workdir: Path, **kw: Any) -> dict[str, Any]:
    result = await ExtractTextAction().execute(make_ctx(workdir), ExtractTextInput(**kw))
    return result.outputs


async def test_action_outputs(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    data = make.pdf(["Invoice INV-1", "Page two"], title="INV-1")
    (tmp_path / "in" / "inv.pdf").write_bytes(data)
    lines: list[str] = []
    result = await ExtractTextAction().execute(
        make_ctx(tmp_path, lines), ExtractTextInput(path="in/./inv.pdf")
    )
    out = result.outputs
    ExtractTextOutput.model_validate(out)  # the declared output schema holds
    json.dumps(out)  # outputs are stored as JSON
    assert out["text"] == "Invoice INV-1\n\nPage two"
    assert out["pages"] == [
        {"number": 1, "text": "Invoice INV-1"},
        {"number": 2, "text": "Page two"},
    ]
    assert out["format"] == "pdf"
    assert out["chars"] == len(out["text"])
    assert out["truncated"] is False
    assert out["warnings"] == []
    assert out["metadata"]["title"] == "INV-1"
    assert out["path"] == "in/inv.pdf"
    assert out["size"] == len(data)
    import hashlib

    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert lines == ["read in/./inv.pdf: pdf, 2 pages, 23 characters"]


async def test_action_truncates_to_max_chars(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("word " * 1000)
    out = await extract(tmp_path, path="notes.txt", max_chars=12)
    assert out["text"] == "word word wo"
    assert out["chars"] == 12
    assert out["truncated"] is True
    assert out["pages"] == [{"number": 1, "text": "word word wo"}]


async def test_paths_stay_in_the_work_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, inbox, other = tmp_path / "work", tmp_path / "inbox", tmp_path / "other"
    for folder in (work, inbox, other):
        folder.mkdir()
    (other / "secret.txt").write_text("secret")
    (inbox / "ticket.txt").write_text("my printer is on fire")
    (work / "link.txt").symlink_to(other / "secret.txt")
    (inbox / "escape.txt").symlink_to(other / "secret.txt")
    monkeypatch.delenv("PLAIT_DOC_DIRS", raising=False)
    with pytest.raises(ActionFailed, match="leads out of the run's work directory"):
        await extract(work, path="../other/secret.txt")
    with pytest.raises(ActionFailed, match=r"through a symlink to .* outside the run's work"):
        await extract(work, path="link.txt")
    with pytest.raises(
        ActionFailed, match=r"is absolute and no directory is allowed \(PLAIT_DOC_DIRS"
    ):
        await extract(work, path=str(inbox / "ticket.txt"))
    monkeypatch.setenv("PLAIT_DOC_DIRS", f"{inbox}{os.pathsep}{tmp_path / 'missing'}")
    out = await extract(work, path=str(inbox / "ticket.txt"))
    assert out["text"] == "my printer is on fire"
    assert out["path"] == str(inbox / "ticket.txt")
    with pytest.raises(ActionFailed, match="is outside the directories in PLAIT_DOC_DIRS"):
        await extract(work, path=str(other / "secret.txt"))
    with pytest.raises(ActionFailed, match="is outside the directories in PLAIT_DOC_DIRS"):
        await extract(work, path=str(inbox / "escape.txt"))  # a link out of the inbox
    with pytest.raises(ActionFailed, match="is outside the directories"):
        await extract(work, path=str(inbox) + "-evil/x.txt")  # a prefix is not a parent


async def test_what_cannot_be_read_fails_clearly(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")  # reading it would block forever
    (tmp_path / "folder").mkdir()
    (tmp_path / "big.txt").write_bytes(b"x" * 2000)
    (tmp_path / "fake.pdf").write_text("I am text")
    cases = {
        "nope.pdf": r"^nope\.pdf does not exist$",
        "pipe.txt": r"^pipe\.txt is not a regular file$",
        "folder": r"^folder is a directory, not a document$",
        "fake.pdf": r"^fake\.pdf: the name says a PDF but the content does not start with %PDF-$",
    }
    for path, message in cases.items():
        with pytest.raises(ActionFailed, match=message) as caught:
            await extract(tmp_path, path=path)
        assert caught.value.retryable is False
    with pytest.raises(
        ActionFailed, match=r"^big\.txt is 2\.0 KB, more than the limit of 1000 bytes"
    ):
        await extract(tmp_path, path="big.txt", max_bytes=1000)


def test_bad_inputs_are_named() -> None:
    for kw, needle in [
        ({"path": "a.txt", "format": "odt"}, "format"),
        ({"path": "a.txt", "encoding": "klingon-8"}, "unknown encoding 'klingon-8'"),
        ({"path": "a.txt", "max_chars": 0}, "max_chars"),
        ({"path": "a.txt", "pages": 3}, "pages"),
        ({}, "path"),
    ]:
        with pytest.raises(ValidationError, match=needle):
            ExtractTextInput(**kw)


# -- in a workflow ------------------------------------------------------------------------
WORKFLOW = """
name: documents
steps:
  - id: mail
    uses: doc.extract_text
    with: {path: ticket.eml, extract_attachments: true}
  - id: invoice
    uses: doc.extract_text
    with: {path: "${{ 'invoice' ~ '.pdf' }}", max_pages: 1}
  - id: wrong
    uses: doc.extract_text
    with: {path: fake.docx}
    on_error: continue
outputs:
  subject: "${{ steps.mail.outputs.metadata.subject }}"
  attachment: "${{ steps.mail.outputs.metadata.attachments[0].text }}"
  first_page: "${{ steps.invoice.outputs.pages[0].text }}"
  truncated: "${{ steps.invoice.outputs.truncated }}"
"""


async def test_in_a_workflow_on_a_real_store(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    (work / "ticket.eml").write_bytes((FIXTURES / "ticket-with-attachments.eml").read_bytes())
    (work / "invoice.pdf").write_bytes(make.pdf(["Invoice INV-9", "second page"]))
    (work / "fake.docx").write_bytes(make.pdf(["not a docx"]))
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    try:
        plan = load_workflow(WORKFLOW, "wf.yaml", session.registry.input_models()).plan
        result = await session.run(plan, WORKFLOW, {}, workdir=work)
    finally:
        await session.close()
    status = {s.id: s.status for s in result.steps}
    assert status == {"mail": "succeeded", "invoice": "succeeded", "wrong": "failed"}
    assert result.success
    assert result.outputs == {
        "subject": "Invoice INV-88 was charged twice",
        "attachment": "date,amount\n2026-03-10,1250.00\n2026-03-10,1250.00",
        "first_page": "Invoice INV-9",
        "truncated": True,
    }
    error = result.step("wrong").error or ""
    assert error == "fake.docx: the name says a Word document (DOCX) but the content is a PDF"


def plait(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env["PLAIT_HOME"] = str(cwd / "home")
    return subprocess.run(
        [sys.executable, "-m", "plait.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_plait_command_reports_bad_documents_and_bad_steps(tmp_path: Path) -> None:
    (tmp_path / "scan.pdf").write_bytes(make.scanned_pdf(1))
    (tmp_path / "locked.pdf").write_bytes(make.pdf(["x"], password="pw"))
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: flow\nsteps:\n"
        "  - id: scan\n    uses: doc.extract_text\n    with: {path: scan.pdf}\n"
        "  - id: locked\n    uses: doc.extract_text\n    with: {path: locked.pdf}\n"
    )
    done = plait("run", str(flow), "--results-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    (result,) = (tmp_path / "out").glob("workflow_*.json")
    steps = {s["id"]: s for s in json.loads(result.read_text())["steps"]}
    assert steps["scan"]["status"] == "succeeded"
    assert "no page has a text layer" in steps["scan"]["outputs"]["warnings"][0]
    assert steps["locked"]["status"] == "failed"
    assert steps["locked"]["error"].startswith("locked.pdf: the PDF is encrypted with a password")
    assert steps["locked"]["attempts"] == 1  # not retried: trying again cannot help
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nsteps:\n  - id: read\n    uses: doc.extract_text\n"
        "    with: {path: a.txt, format: odt, max_chars: -1}\n"
    )
    done = plait("validate", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{bad}:5:" in done.stderr
    assert "format" in done.stderr
    assert "max_chars" in done.stderr
    assert "Traceback" not in done.stderr


# -- start-up cost ------------------------------------------------------------------------
LAZY = """
import asyncio, sys
from pathlib import Path
from plait.actions.registry import ActionRegistry
from plait.model import load_workflow
source = (
    "name: one\\nsteps:\\n  - id: read\\n    uses: doc.extract_text\\n"
    "    with: {path: a.txt}\\n"
)
registry = ActionRegistry()
load_workflow(source, "one.yaml", registry.input_models())
from plait.actions.base import ActionContext
ctx = ActionContext("r", "w", "s", 1, Path(sys.argv[1]), {}, lambda s, l: None, lambda t: t)
action = registry.get("doc.extract_text")
asyncio.run(action.execute(ctx, action.Input(path="a.txt")))
asyncio.run(action.execute(ctx, action.Input(path="b.eml")))
heavy = ["pypdf", "docx", "lxml", "torch", "numpy", "sentence_transformers"]
print(sorted(name for name in heavy if name in sys.modules))
"""


def test_reading_text_and_email_imports_no_heavy_library(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.eml").write_bytes((FIXTURES / "ticket-html-only.eml").read_bytes())
    done = subprocess.run(
        [sys.executable, "-c", LAZY, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
