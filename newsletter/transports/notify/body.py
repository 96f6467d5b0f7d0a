"""An issue variant in GOV.UK Notify's own formatting, for the Notify route.

Notify does not take our HTML: every email is one Notify template (subject
`((subject))`, body `((body))`) and Notify renders the body itself. Its
formatting (notifications.service.gov.uk "Formatting guidance"; the
renderer is mistune in alphagov/notifications-utils) understands:
- `# ` a heading and `## ` a subheading (deeper ones are plain text);
- `* `, `- ` or `• ` bullets, `1. ` numbers, nested by indenting under the
  text of the bullet above;
- `^ ` at the start of lines: inset text (a grey bar), which may hold a list;
- `---` on its own line, between blank lines: a horizontal rule;
- a full `https://` address: a link. No bold, italics or HTML.
A single line break is kept as a line break; a blank line starts a paragraph.

So the walk mirrors the text part (templates/email/newsletter.txt.j2): the
same sections, prompts and documents, with the section titles as `#`
headings, bullets as `* ` lists, each "For information and consideration"
block as inset text, links written out as their addresses and sections
divided by rules. The Markdown fields (intro, lead-ins, bullets, prompts)
are walked as markdown-it tokens (the parser `newsletter.content.markup` uses), so
an escape, a link or a list means here what it means in the HTML.

Rendering runs once per variant; the four personal parts (greeting,
address, unsubscribe line, web-version link) are slots filled per person.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from markdown_it.tree import SyntaxTreeNode

from newsletter.audience.lists import Recipient, Variant
from newsletter.content.issue import Issue, Point
from newsletter.content.markup import _parser
from newsletter.core.checks import link_problem
from newsletter.core.settings import Settings
from newsletter.render.links import share_ideas_subject, unsubscribe_link, web_version_url
from newsletter.render.variants import section_view

RULE = "---"
SLOTS = ("greeting", "email", "unsubscribe", "web_version_url")
# Line starts Notify would read as formatting when we mean text (a heading, a
# bullet or number, a rule or fence), each escaped with a backslash, which
# Notify's renderer drops again before these characters.
_TEXT_ESCAPES = re.compile(r"[\\\[\]]")
_LINE_START = re.compile(r"^(\s*)(#|[*+-](?=\s|$)|\d+(?=\.(?:\s|$))|`{3,}|~{3,}|_{3,})")


class NotifyRenderer:
    """Renders an issue's variants in Notify formatting (cached) and fills them per person."""

    def __init__(self, settings: Settings, issue: Issue) -> None:
        self.settings = settings
        self.issue = issue
        self._cache: dict[tuple[str, ...], str] = {}
        nonce = secrets.token_hex(6)
        self._tokens = {slot: f"SLOT{nonce}{slot.upper()}END" for slot in SLOTS}
        self._web_version_url = web_version_url(settings, issue)

    def variant_body(self, variant: Variant) -> str:
        """The variant's body with slot tokens in place of the personal parts (rendered once)."""
        cached = self._cache.get(variant.section_ids)
        if cached is None:
            cached = self._render(variant)
            self._cache[variant.section_ids] = cached
        return cached

    def body(self, variant: Variant, recipient: Recipient) -> str:
        """One recipient's `((body))`: the variant's body with their parts filled in.

        The subject is the message's own Subject header (it carries the
        `[TEST]` prefix of a test copy), so the transport takes it from there.
        """
        body = self.variant_body(variant)
        for slot, value in self.personal_values(recipient).items():
            body = body.replace(self._tokens[slot], value)
        return body

    def personal_values(self, recipient: Recipient) -> dict[str, str]:
        name = recipient.name.strip()
        link = unsubscribe_link(self.settings, self.issue, recipient.email)
        if link.startswith("mailto:"):
            unsubscribe = (
                f"To unsubscribe from the {self.settings.organisation} News Update, email "
                f"{self.settings.unsubscribe_mailto} and ask to be taken off the list."
            )
        else:
            unsubscribe = f"Unsubscribe from the {self.settings.organisation} News Update:\n{link}"
        return {
            "greeting": escape_line_starts(f"Dear {name}," if name else "Hello,"),
            "email": recipient.email,
            "unsubscribe": unsubscribe,
            "web_version_url": self._web_version_url,
        }

    # -- the layout (the text part's, in Notify's formatting) ----------------------

    def _render(self, variant: Variant) -> str:
        settings, issue, slot = self.settings, self.issue, self._tokens
        blocks = [
            escape_line_starts(f"{settings.organisation} News Update - {issue.date:%B %Y}"),
            heading(issue.title),
            f"View this News Update in your browser:\n{slot['web_version_url']}",
            slot["greeting"],
        ]
        if issue.intro:
            blocks.append(notify_markdown(issue.intro, block=True))
        chosen = set(variant.section_ids)
        for section in (s for s in issue.sections if s.id in chosen):
            view = section_view(issue, section)
            blocks += [RULE, heading(section.title)]
            if section.lead_in:
                blocks.append(notify_markdown(section.lead_in, block=True))
            if section.points:
                blocks.append(bullets(section.points))
            if section.prompts:
                blocks.append(
                    inset(
                        [
                            escape_line_starts(f"{section.prompts_heading}:"),
                            *(f"* {notify_markdown(p)}" for p in section.prompts),
                        ]
                    )
                )
            for document in view.documents:
                where = document.url if document.url else "(link to follow)"
                blocks.append(
                    escape_line_starts(f"{document.heading}: {_one_line(document.text)}")
                    + f"\n{where}"
                )
            blocks.append(
                escape_line_starts(
                    f"{view.share_ideas_text}: email {issue.reply_to} with the subject "
                    f"“{share_ideas_subject(issue, section)}”."
                )
            )
        blocks += [
            RULE,
            escape_line_starts(
                f"Have your say. Reply to this email, or write to {issue.reply_to}, "
                "with your ideas and questions."
            ),
        ]
        if settings.footer:
            blocks.append(notify_markdown(settings.footer, block=True))
        blocks += [
            f"This email was sent to {slot['email']}.\n{slot['unsubscribe']}",
            "Read past News Updates on the Learning from Practice page:\n"
            + settings.archive_base_url,
            "\n".join(escape_line_starts(line) for line in settings.postal_address.splitlines()),
        ]
        return "\n\n".join(b for b in blocks if b.strip()) + "\n"


def heading(text: str) -> str:
    """A `#` heading on one line."""
    return f"# {_one_line(text)}"


def bullets(points: Sequence[Point], indent: str = "") -> str:
    """Bullets as `* ` lines; nested bullets indented under the text of their parent."""
    lines = []
    for point in points:
        lines.append(f"{indent}* {notify_markdown(point.text)}")
        if point.points:
            lines.append(bullets(point.points, indent + "  "))
    return "\n".join(lines)


def inset(lines: Sequence[str]) -> str:
    """Inset text: every line starts with `^ `."""
    return "\n".join(f"^ {line}" for line in lines)


def notify_markdown(text: str, *, block: bool = False) -> str:
    """A Markdown field in Notify formatting.

    Inline (the default, for bullets and prompts): one line, emphasis marks
    dropped, links written `words (https://...)`. As blocks (intro,
    lead-ins): paragraphs, `* ` and `1. ` lists, `^ ` insets and `---`
    rules, separated by blank lines.
    """
    md = _parser()
    if not block:
        tree = SyntaxTreeNode(md.parseInline(text))
        return _one_line(escape_line_starts(_inline(tree.children)))
    return "\n\n".join(_blocks(SyntaxTreeNode(md.parse(text)).children))


def escape_line_starts(text: str) -> str:
    """Stop text that starts a line with `#`, `*`, `1.` or the like from becoming formatting."""
    return "\n".join(_LINE_START.sub(_escaped, line) for line in text.split("\n"))


def _escaped(match: re.Match[str]) -> str:
    lead, mark = match.group(1), match.group(2)
    # `2019. was` becomes `2019\. was`: the dot, not the number, makes the list.
    return f"{lead}{mark}\\" if mark[0].isdigit() else f"{lead}\\{mark}"


def _blocks(nodes: Sequence[SyntaxTreeNode], indent: str = "") -> list[str]:
    return [rendered for node in nodes if (rendered := _block(node, indent))]


def _block(node: SyntaxTreeNode, indent: str) -> str:
    if node.type in ("paragraph", "heading"):
        text = escape_line_starts(
            "".join(_inline(inline.children) for inline in node.children).strip()
        )
        return f"## {_one_line(text)}" if node.type == "heading" else text
    if node.type in ("bullet_list", "ordered_list"):
        return _list(node, indent)
    if node.type == "blockquote":
        inner = "\n\n".join(_blocks(node.children))
        return inset([line for line in inner.split("\n") if line.strip()])
    if node.type == "hr":
        return RULE
    if node.type in ("code_block", "fence"):
        return escape_line_starts(node.content.strip("\n"))
    return "\n\n".join(_blocks(node.children, indent))


def _list(node: SyntaxTreeNode, indent: str) -> str:
    start = int(str(node.attrs.get("start", 1)))
    lines = []
    for number, item in enumerate(node.children, start):
        marker = f"{number}. " if node.type == "ordered_list" else "* "
        nested = indent + " " * len(marker)
        parts = []
        for child in item.children:
            if child.type in ("bullet_list", "ordered_list"):
                parts.append(_list(child, nested))
            else:
                parts.append(_one_line(_block(child, nested)))
        first, *rest = [p for p in parts if p] or [""]
        lines.append(f"{indent}{marker}{first}")
        lines.extend(rest)
    return "\n".join(lines)


def _inline(nodes: Sequence[SyntaxTreeNode]) -> str:
    return "".join(_inline_node(node) for node in nodes)


def _inline_node(node: SyntaxTreeNode) -> str:
    if node.type == "softbreak":
        return " "
    if node.type == "hardbreak":
        return "\n"
    if node.type in ("link", "image"):
        words = _inline(node.children)
        target = str(node.attrs.get("href") or node.attrs.get("src") or "")
        if link_problem(target) is not None:
            return words  # an unsafe target is never shown as a link
        address = target.removeprefix("mailto:").split("?")[0]
        shown = address if target.startswith("mailto:") else target
        if not words or words in (target, address):
            return shown
        return f"{words} ({shown})"
    if node.children:
        return _inline(node.children)
    if node.type == "text":
        # Brackets that markdown-it did not read as a link must not become one in
        # Notify; a backslash stays a backslash. Notify's renderer drops these escapes.
        return _TEXT_ESCAPES.sub(r"\\\g<0>", node.content)
    return node.content


def _one_line(text: str) -> str:
    return " ".join(text.split())
