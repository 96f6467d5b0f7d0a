"""Turn an issue into emails: render each variant once, then personalise per person.

A *variant* is the set of sections one group of recipients gets. Jinja2 and
premailer (the slow part: it parses the HTML and the CSS and inlines every
rule) run once per variant. The personal parts (greeting, address,
unsubscribe link, web-version link) are left in the output as slot tokens
that premailer passes through untouched; `Renderer.personalise` then only
joins pre-split strings with the escaped values, which is what lets 10,000
recipients cost little more than one render.
"""

from __future__ import annotations

import html
import re
import secrets
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment

from newsletter.audience.lists import Recipient, Variant, sample_recipients, variant_for
from newsletter.content.issue import Issue, Link, Section
from newsletter.core.cachefile import CacheDir, cache_key
from newsletter.core.errors import Problem
from newsletter.core.project import Project
from newsletter.render.budget import check_email_html
from newsletter.render.inlining import inline_css, inline_css_kept
from newsletter.render.links import share_ideas_mailto, unsubscribe_link, web_version_url
from newsletter.render.message import PersonalisedEmail
from newsletter.render.templating import HTML_TEMPLATE, TEXT_TEMPLATE, make_environment

__all__ = [
    "SAMPLE_RECIPIENT",
    "PersonalisedEmail",
    "RenderedVariant",
    "Renderer",
    "budget_problems",
    "inline_css",
    "sample_variants",
    "wrap_text",
]

TEXT_WIDTH = 78
SLOTS = ("greeting", "email", "unsubscribe_url", "web_version_url")
# The site names the paper appends to link texts; the button does not need them.
_SITE_SUFFIX = re.compile(r"\s+-\s+GOV\.UK\s+\(www\.gov\.uk\)\s*$")


@dataclass(frozen=True)
class DocumentLink:
    """A document link as the templates show it: label, full title and button text."""

    heading: str
    text: str
    url: str | None
    button_text: str


@dataclass(frozen=True)
class SectionView:
    """A section with the links and reply route worked out for the templates."""

    section: Section
    documents: tuple[DocumentLink, ...]
    share_ideas_url: str
    share_ideas_text: str


@dataclass(frozen=True)
class _Template:
    """Rendered output split at its slot tokens: parts[0] slot parts[1] slot ..."""

    parts: tuple[str, ...]
    slots: tuple[str, ...]

    def pieces(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """The shared parts with the slot values between them: shared, value, shared, ..."""
        pieces = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            pieces.append(values[slot])
            pieces.append(part)
        return tuple(pieces)

    def fill(self, values: Mapping[str, str]) -> str:
        return "".join(self.pieces(values))


@dataclass(frozen=True)
class RenderedVariant:
    """One variant rendered and inlined once; `html`/`text` still hold slot tokens."""

    variant: Variant
    subject: str
    html: str
    text: str
    _html: _Template
    _text: _Template


def button_text(link: Link) -> str:
    """Button text that makes sense read alone, as screen-reader link lists read it."""
    short = _SITE_SUFFIX.sub("", link.text).strip() or link.text
    verb = "Read the report" if link.publication_id and not link.attachment_id else "Open"
    return f"{verb}: {short}"


def section_view(issue: Issue, section: Section) -> SectionView:
    documents = tuple(
        DocumentLink(link.heading or "Link to document", link.text, link.url, button_text(link))
        for link in section.links
    )
    return SectionView(
        section,
        documents,
        share_ideas_mailto(issue, section),
        f"Share your ideas on {section.title}",
    )


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap a plain-text body at `width` columns, never breaking a word or URL.

    Bulleted lines get a hanging indent so continuation lines sit under the
    text, as people expect in a plain-text email.
    """
    out: list[str] = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line.rstrip())
            continue
        match = re.match(r"^(\s*(?:[-*•]\s+|\d+\.\s+)?)", line)
        prefix = match.group(1) if match else ""
        out.extend(
            textwrap.wrap(
                line[len(prefix) :],
                width=width,
                initial_indent=prefix,
                subsequent_indent=" " * len(prefix),
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(out).strip("\n") + "\n"


def reflow(text: str) -> str:
    """Join the hard-wrapped lines of each paragraph, so `wrap_text` can rewrap them."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    joined = []
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        if any(re.match(r"^\s*(?:[-*•]|\d+\.)\s", line) for line in lines):
            joined.append(paragraph)  # a list: keep one item per line
        else:
            joined.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(joined)


def _split(rendered: str, tokens: Mapping[str, str]) -> _Template:
    by_token = {token: slot for slot, token in tokens.items()}
    pattern = re.compile("|".join(re.escape(t) for t in by_token))
    pieces = pattern.split(rendered)
    found = tuple(by_token[m.group(0)] for m in pattern.finditer(rendered))
    return _Template(tuple(pieces), found)


class Renderer:
    """Renders one issue's variants (cached) and personalises them per recipient."""

    def __init__(self, project: Project, issue: Issue) -> None:
        self.project = project
        self.issue = issue
        self.settings = project.settings
        self._env: Environment = make_environment(project.template_dirs, project.paths.cache_dir)
        self._env.filters["reflow"] = reflow
        self._cache: dict[tuple[str, ...], RenderedVariant] = {}
        cache_dir = project.paths.cache_dir
        # premailer's results, kept between commands
        self._kept = CacheDir(cache_dir) if cache_dir is not None else None
        self._nonce = nonce = secrets.token_hex(6)
        # Tokens content cannot guess; URL-shaped so premailer's link rewriting leaves them be.
        self._tokens = {
            slot: (
                f"https://slot-{nonce}.invalid/{slot}"
                if slot.endswith("_url")
                else f"SLOT{nonce}{slot.upper()}END"
            )
            for slot in SLOTS
        }
        self._web_version_url = web_version_url(self.settings, issue)

    def context(self, variant: Variant) -> dict[str, Any]:
        """What the templates see for one variant."""
        chosen = set(variant.section_ids)
        sections = [section_view(self.issue, s) for s in self.issue.sections if s.id in chosen]
        return {
            "issue": self.issue,
            "settings": self.settings,
            "variant": variant,
            "sections": sections,
            "subject": self.issue.subject,
            "lang": "en-GB",
            "dir": "ltr",
            "slot": self._tokens,
        }

    def variant(self, variant: Variant) -> RenderedVariant:
        """Render and inline this variant once; later calls return the cached result."""
        cached = self._cache.get(variant.section_ids)
        if cached is not None:
            return cached
        context = self.context(variant)
        raw_html = self._env.get_template(HTML_TEMPLATE).render(context)
        inlined = inline_css_kept(
            raw_html,
            self.settings.archive_base_url,
            (self._nonce, tuple(self._tokens.values())),
            self._kept,
            "inline-" + cache_key(str(self.issue.path), *variant.section_ids),
        )
        text = wrap_text(self._env.get_template(TEXT_TEMPLATE).render(context))
        rendered = RenderedVariant(
            variant,
            self.issue.subject,
            inlined,
            text,
            _split(inlined, self._tokens),
            _split(text, self._tokens),
        )
        self._cache[variant.section_ids] = rendered
        return rendered

    def personal_values(self, recipient: Recipient) -> dict[str, str]:
        """The plain-text values of the slots for one recipient."""
        name = recipient.name.strip()
        return {
            "greeting": f"Dear {name}," if name else "Hello,",
            "email": recipient.email,
            "unsubscribe_url": unsubscribe_link(self.settings, self.issue, recipient.email),
            "web_version_url": self._web_version_url,
        }

    def personalise(self, variant: Variant, recipient: Recipient) -> PersonalisedEmail:
        """One recipient's email: string joins on the cached variant, no Jinja or premailer."""
        rendered = self.variant(variant)
        values = self.personal_values(recipient)
        escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
        html_pieces = rendered._html.pieces(escaped)
        text_pieces = rendered._text.pieces(values)
        return PersonalisedEmail(
            rendered.subject,
            "".join(html_pieces),
            "".join(text_pieces),
            html_pieces,
            text_pieces,
        )


# --- one sample email per variant (for `render`, `preview` and `validate`) ----

SAMPLE_RECIPIENT = Recipient("practitioner@example.org", "Sample Practitioner")


def sample_variants(project: Project, issue: Issue) -> list[tuple[Variant, Recipient, int]]:
    """Each variant with its first recipient and recipient count (all sections if nobody)."""
    samples, counts = sample_recipients(project.audience_source(), issue)
    found = [
        (variant, recipient, counts.per_variant[key])
        for key, (recipient, variant) in sorted(samples.items())
    ]
    if not found:
        everything = variant_for(issue, tuple(s.id for s in issue.sections))
        found = [(everything, SAMPLE_RECIPIENT, 0)]
    return found


def budget_problems(issue: Issue, variant: Variant, document: str) -> list[Problem]:
    """The budget check's findings for one variant, located at the issue file."""
    return [
        Problem(issue.path, 1, 1, f"the email for variant `{variant.key}`: {message}")
        for message in check_email_html(document, preheader=issue.preheader)
    ]
