"""HTML to text with the standard library's tokenizer (``html.parser``).

The page's words as a reader sees them: blocks (paragraphs, headings, list items, table
rows) become lines, table cells are separated by tabs, entities are decoded, and what is
not content is dropped — scripts, styles, templates, navigation (``<nav>``, ``<aside>``,
``role="navigation"``) and hidden elements (``hidden``, ``aria-hidden``, ``display:
none``, common in e-mails). The tokenizer does not build a tree and nothing here
recurses, so a page nested a million levels deep is just a long page. Nothing is
fetched: ``src`` and ``href`` are never followed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from plait.ai.documents import Found, Page, clean_lines, decode_text

#: elements whose content is not text a reader sees
_DROP = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "svg",
        "math",
        "canvas",
        "iframe",
        "object",
        "embed",
        "nav",
        "aside",
        "select",
        "datalist",
    }
)
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
#: elements that stand apart from what is around them with a blank line
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl"}
    | {"figure", "address", "hr", "details", "fieldset"}
)
#: elements that start and end on their own line
_BLOCK = frozenset(
    {
        "article",
        "body",
        "caption",
        "center",
        "dd",
        "dialog",
        "div",
        "dt",
        "figcaption",
        "footer",
        "form",
        "header",
        "hgroup",
        "html",
        "legend",
        "li",
        "main",
        "menu",
        "section",
        "summary",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "title",
    }
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
#: list nesting kept track of (deeper lists are still read, numbered as bullets)
_MAX_LISTS = 64
#: nested list items are indented up to this many levels (deeper ones as deep as that)
_MAX_INDENT = 8


def read_html(data: bytes, name: str, encoding: str | None) -> Found:
    """The text of an HTML page (as bytes), with its title, author and language."""
    charset = _CHARSET.search(data[:4096])
    hints = [charset.group(1).decode("ascii")] if charset else []
    text, warnings = decode_text(data, name, encoding, hints=hints)
    converter = HtmlText()
    converter.feed(text)
    converter.close()
    found = Found([Page(1, converter.text())], warnings=warnings)
    found.metadata.update(converter.metadata)
    return found


def html_to_text(markup: str) -> str:
    """The text of an HTML fragment or page (an e-mail's HTML body)."""
    converter = HtmlText()
    converter.feed(markup)
    converter.close()
    return converter.text()


class HtmlText(HTMLParser):
    """Collects a page's visible text as lines; call :meth:`text` after ``close()``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._breaks = 0  # newlines owed before the next text
        self._hidden: str | None = None  # the element hiding what is inside it
        self._hidden_depth = 0
        self._pre = 0
        self._lists: list[int] = []  # per open list: the next number, or 0 for bullets
        self._lists_over = 0
        self._cells = 0  # cells so far in the current table row
        self._title: list[str] | None = None
        self.metadata: dict[str, str | None] = {"title": None, "author": None}

    # -- tokens ------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._hidden is not None:
            self._hidden_depth += tag == self._hidden
            return
        if self._title is not None:  # a <title> left open ends where markup starts again
            self._end_title()
        attributes = {key: value or "" for key, value in attrs}
        if tag not in _VOID and (tag in _DROP or _is_hidden(attributes)):
            self._hidden, self._hidden_depth = tag, 1
            return
        if tag == "title":
            self._title = []
            return
        if tag == "meta":
            self._meta(attributes)
        elif tag == "html" and attributes.get("lang"):
            self.metadata["language"] = attributes["lang"]
        self._open(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._hidden is not None:
            if tag == self._hidden:
                self._hidden_depth -= 1
                if self._hidden_depth <= 0:
                    self._hidden = None
            return
        if tag == "title" and self._title is not None:
            self._end_title()
            return
        self._close(tag)

    def _end_title(self) -> None:
        assert self._title is not None
        title = _SPACES.sub(" ", "".join(self._title)).strip()
        self.metadata["title"] = self.metadata["title"] or title or None
        self._title = None

    def handle_data(self, data: str) -> None:
        if self._hidden is not None:
            return
        if self._title is not None:
            self._title.append(data)
            return
        if self._pre:
            self._write(data, verbatim=True)
        else:
            self._write(_SPACES.sub(" ", data))

    # -- structure ---------------------------------------------------------------------
    def _open(self, tag: str) -> None:
        if tag == "br":
            self._out.append("\n")
            self._breaks = 0
        elif tag in ("ul", "ol"):
            self._break(2 if not self._lists else 1)
            if len(self._lists) < _MAX_LISTS:
                self._lists.append(1 if tag == "ol" else 0)
            else:
                self._lists_over += 1
        elif tag == "li":
            self._break(1)
            self._bullet()
        elif tag == "tr":
            self._break(1)
            self._cells = 0
        elif tag in ("td", "th"):
            if self._cells:
                self._out.append("\t")
            self._cells += 1
        elif tag == "pre":
            self._break(2)
            self._pre += 1
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _BLOCK:
            self._break(1)

    def _close(self, tag: str) -> None:
        if tag in ("ul", "ol"):
            if self._lists_over:
                self._lists_over -= 1
            elif self._lists:
                self._lists.pop()
            self._break(2 if not self._lists else 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._break(2)
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _BLOCK:
            self._break(1)

    def _bullet(self) -> None:
        depth = len(self._lists) + self._lists_over
        indent = "  " * min(max(0, depth - 1), _MAX_INDENT)
        if self._lists and self._lists[-1] and not self._lists_over:
            number = self._lists[-1]
            self._lists[-1] += 1
            self._write_raw(f"{indent}{number}. ")
        else:
            self._write_raw(f"{indent}- ")

    def _meta(self, attributes: dict[str, str]) -> None:
        key = (attributes.get("name") or attributes.get("property") or "").lower()
        content = attributes.get("content", "").strip()
        if not content:
            return
        if key in ("author", "article:author", "dc.creator"):
            self.metadata["author"] = content
        elif key in ("description", "og:description"):
            self.metadata.setdefault("description", content)
        elif key == "og:title" and not self.metadata["title"]:
            self.metadata["title"] = content
        elif key in ("article:published_time", "dc.date", "date"):
            self.metadata["created"] = content
        elif key in ("article:modified_time", "last-modified"):
            self.metadata["modified"] = content

    # -- output ------------------------------------------------------------------------
    def _break(self, count: int) -> None:
        self._breaks = max(self._breaks, count)

    def _write(self, text: str, *, verbatim: bool = False) -> None:
        if not text:
            return
        if not verbatim and self._at_line_start():
            text = text.lstrip()
            if not text:
                return
        self._write_raw(text)

    def _write_raw(self, text: str) -> None:
        if self._breaks and self._out:
            self._out.append("\n" * self._breaks)
        self._breaks = 0
        if text.startswith(" ") and self._out and self._out[-1].endswith((" ", "\t")):
            text = text.lstrip(" ")
        self._out.append(text)

    def _at_line_start(self) -> bool:
        return bool(self._breaks) or not self._out or self._out[-1].endswith(("\n", "\t"))

    def text(self) -> str:
        return clean_lines("".join(self._out))


def _is_hidden(attributes: dict[str, str]) -> bool:
    if "hidden" in attributes or attributes.get("aria-hidden", "").lower() == "true":
        return True
    if attributes.get("role", "").lower() == "navigation":
        return True
    return bool(_HIDDEN_STYLE.search(attributes.get("style", "")))
