"""The size, safety and accessibility budget every HTML email must keep.

`check_email_html` returns problems in plain words; an empty list means the
email is within budget. `render` refuses to write an email that breaks it and
`validate` reports the same findings, so a comms officer hears about a
clipped or inaccessible email before anyone receives it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

MAX_HTML_BYTES = 102 * 1024  # Gmail clips larger messages, hiding the unsubscribe link
VAGUE_LINK_TEXTS = frozenset(
    {
        "click here",
        "click",
        "here",
        "read more",
        "more",
        "link",
        "this link",
        "learn more",
        "find out more",
        "more info",
        "more information",
        "go",
        "this",
    }
)
_LAYOUT_TAGS = frozenset({"table"})
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


def _style_hides(style: str) -> bool:
    compact = re.sub(r"\s+", "", style.lower())
    return "display:none" in compact


class _Scanner(HTMLParser):
    """One pass over the document collecting what the checks need."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.html_attrs: dict[str, str] | None = None
        self.body_seen = False
        self.wrapper_lang_dir = False
        self.title_text: list[str] | None = None
        self.title = ""
        self.metas: list[dict[str, str]] = []
        self.external: list[str] = []
        self.images_without_alt = 0
        self.links: list[tuple[str, list[str]]] = []  # (href, text parts)
        self.open_links: list[tuple[str, list[str]]] = []
        self.tables_without_role = 0
        self.first_body_text: tuple[str, bool] | None = None  # (text, hidden)
        self.hidden_depth = 0
        self.preheader_hidden_stack: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: (v or "") for k, v in attrs}
        self._note(tag, values)
        if (
            self.body_seen
            and tag not in ("body", "html")
            and values.get("lang")
            and values.get("dir")
        ):
            self.wrapper_lang_dir = True
        if tag in _VOID:
            return
        hidden = _style_hides(values.get("style", "")) or "hidden" in values
        self.stack.append((tag, values))
        self.preheader_hidden_stack.append(hidden)
        if hidden:
            self.hidden_depth += 1

    def _note(self, tag: str, values: dict[str, str]) -> None:
        """Record what one start tag tells the checks."""
        if tag == "html":
            self.html_attrs = values
        elif tag == "body":
            self.body_seen = True
        elif tag == "title":
            self.title_text = []
        elif tag == "meta":
            self.metas.append(values)
        elif tag == "link" and "stylesheet" in values.get("rel", "").lower():
            self.external.append(f"a linked stylesheet ({values.get('href', '')})")
        elif tag == "script":
            where = values.get("src")
            self.external.append(f"a script ({where})" if where else "a script")
        elif tag == "img" and "alt" not in values:
            self.images_without_alt += 1
        elif tag == "a":
            self.open_links.append((values.get("href", ""), []))
        elif tag in _LAYOUT_TAGS and values.get("role") != "presentation":
            self.tables_without_role += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self.title_text is not None:
            self.title = "".join(self.title_text).strip()
            self.title_text = None
        if tag == "a" and self.open_links:
            self.links.append(self.open_links.pop())
        if tag in _VOID:
            return
        # Pop to the matching open tag; HTML lets some end tags be implied.
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                for _ in range(len(self.stack) - index):
                    self.stack.pop()
                    if self.preheader_hidden_stack.pop():
                        self.hidden_depth -= 1
                break

    def handle_data(self, data: str) -> None:
        if self.title_text is not None:
            self.title_text.append(data)
        for _, parts in self.open_links:
            parts.append(data)
        if self.body_seen and self.first_body_text is None and data.strip():
            self.first_body_text = (data.strip(), self.hidden_depth > 0)


def _meta(metas: list[dict[str, str]], name: str) -> str | None:
    for meta in metas:
        if meta.get("name", "").lower() == name:
            return meta.get("content", "")
    return None


def check_email_html(html: str, *, preheader: str | None = None) -> list[str]:
    """Everything in this HTML email that breaks the budget, in plain words.

    With `preheader`, also checks that the first text in the body is that
    preheader (not just some hidden text).
    """
    problems: list[str] = []
    size = len(html.encode("utf-8"))
    if size >= MAX_HTML_BYTES:
        problems.append(
            f"the HTML is {size / 1024:.1f} KB; it must stay under {MAX_HTML_BYTES // 1024} KB "
            "or Gmail clips it and hides the unsubscribe link: remove some sections or text"
        )
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    problems += _document_problems(scanner)
    problems += _element_problems(scanner)
    for href, parts in scanner.links:
        problems += _link_problems(href, " ".join("".join(parts).split()))
    problems += _preheader_problems(scanner.first_body_text, preheader)
    return problems


def _document_problems(scanner: _Scanner) -> list[str]:
    """The document as a whole: language, title, viewport, dark mode."""
    problems = []
    attrs = scanner.html_attrs or {}
    if not attrs.get("lang") or not attrs.get("dir"):
        problems.append("the <html> element needs `lang` and `dir` attributes")
    if not scanner.wrapper_lang_dir:
        problems.append(
            "an element inside <body> needs `lang` and `dir` (webmail removes <html> and its attributes)"
        )
    if not scanner.title:
        problems.append("the <title> is missing or empty")
    viewport = _meta(scanner.metas, "viewport")
    if not viewport or "width=device-width" not in viewport.replace(" ", ""):
        problems.append('there is no `<meta name="viewport" content="width=device-width, ...">`')
    if not _meta(scanner.metas, "color-scheme"):
        problems.append('there is no `<meta name="color-scheme">` for dark mode')
    return problems


def _element_problems(scanner: _Scanner) -> list[str]:
    """External resources, images without alt text, layout tables screen readers misread."""
    problems = [
        f"the email loads {what}; emails must not use external CSS or scripts"
        for what in scanner.external
    ]
    if scanner.images_without_alt:
        problems.append(
            f'{scanner.images_without_alt} image(s) have no `alt` text (use alt="" for decoration)'
        )
    if scanner.tables_without_role:
        problems.append(
            f'{scanner.tables_without_role} layout table(s) lack role="presentation", '
            "so screen readers announce them as data tables"
        )
    return problems


def _link_problems(href: str, text: str) -> list[str]:
    """A link must go somewhere safe and say where it goes."""
    problems = []
    target = href.strip()
    if not target.lower().startswith(("https://", "mailto:")):
        problems.append(
            f"the link `{text or '(no text)'}` goes to `{target or '(nothing)'}`; "
            "every link must be an absolute https: or mailto: address"
        )
    if not text:
        problems.append(f"the link to `{target}` has no text")
    elif text.lower().strip(" .:!…>»") in VAGUE_LINK_TEXTS:
        problems.append(
            f"the link text `{text}` (to {target}) does not make sense on its own; "
            "say where it goes, e.g. `Read the report: ...`"
        )
    return problems


def _preheader_problems(first: tuple[str, bool] | None, preheader: str | None) -> list[str]:
    """The first text in the body must be the hidden preheader."""
    if first is None:
        return ["the body has no text"]
    text, hidden = first
    if not hidden:
        return [f"the first text in the body (`{text[:60]}`) should be the hidden preheader"]
    if preheader is not None and not text.startswith(" ".join(preheader.split())):
        return [f"the first text in the body (`{text[:60]}`) is not the preheader `{preheader}`"]
    return []
