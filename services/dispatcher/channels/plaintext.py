"""The plain-text part of an email made from its HTML, with the standard library's
``html.parser`` (entities unescaped by it, ``&nbsp;`` as a space): block elements and
``<br>`` break lines, a link keeps its URL (``Track it <https://…>``), scripts, styles
and the head are dropped, runs of spaces collapse."""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: elements that start and end a line of text
BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody",
        "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
#: elements whose content is not text a reader sees
HIDDEN = frozenset({"head", "script", "style", "template", "title"})
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        #: text, and line breaks as ints (how many newlines; adjacent ones merge)
        self.out: list[str | int] = []
        self._hidden = 0
        self._links: list[str | None] = []
        self._link_text: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in BLOCKS:
            self.out.append(2 if tag in _PARAGRAPHS else 1)
            if tag == "li":
                self.out.append("- ")
        elif tag == "a":
            href = dict(attrs).get("href")
            self._links.append(href if href and not href.startswith(("#", "mailto:")) else None)
            self._link_text.append(len(self.out))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":  # <a/>: nothing to show
            return
        self.handle_starttag(tag, attrs)
        if tag in HIDDEN:
            self._hidden -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in BLOCKS:
            self.out.append(2 if tag in _PARAGRAPHS else 1)
        elif tag == "a" and self._links:
            href, start = self._links.pop(), self._link_text.pop()
            text = "".join(p for p in self.out[start:] if isinstance(p, str)).strip()
            if href and href != text:
                self.out.append(f" <{href}>" if text else href)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """The text a reader of ``html`` sees, as a plain-text email part."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    text: list[str] = []
    pending = 0
    for part in parser.out:
        if isinstance(part, int):
            pending = max(pending, part)
            continue
        if pending:
            text.append("\n" * pending)
            pending = 0
        text.append(part)
    lines = []
    for line in "".join(text).replace("\xa0", " ").split("\n"):
        lines.append(re.sub(r"[^\S\n]+", " ", line).strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
