"""Test copies (proofs): one copy of each variant to each of a few addresses, before the real send.

Each copy's subject says it is a test and who gets that variant
(`[TEST: health, police] News Update ...`), so someone checking three copies
knows which is which. The copy greets a neutral sample name, never a real
recipient's, and is addressed (and unsubscribed) to the address it goes to.
Nothing is recorded in the ledger, so sending proofs never counts as sending
the issue. A transport that keeps copies on disk (the outbox) says where each
one went.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from jinja2 import TemplateError

from newsletter.audience.lists import Variant, sample_recipients
from newsletter.content.issue import Issue
from newsletter.core.checks import email_problem
from newsletter.core.errors import ContentError, NewsletterError
from newsletter.core.project import Project
from newsletter.delivery.send_options import SendOptions, TransportFactory
from newsletter.render.message import build_message
from newsletter.render.problems import render_error_problems
from newsletter.render.variants import SAMPLE_RECIPIENT, Renderer
from newsletter.transports.base import (
    DeliveryResult,
    KeepsCopies,
    OutgoingMessage,
    connect_now,
)
from newsletter.transports.lookup import open_transport, provider_body
from newsletter.transports.outbox import OutboxTransport


@dataclass(frozen=True)
class Proof:
    """One test copy: which variant, to whom, what it was marked with, and what happened."""

    address: str
    variant: Variant
    label: str  # who gets this variant, as in the subject's [TEST: ...]
    result: DeliveryResult
    location: str | None = None  # where the transport kept it (the outbox file), if anywhere

    def as_dict(self) -> dict[str, str | None]:
        return {
            "to": self.address,
            "variant": self.variant.key,
            "label": self.label,
            "status": self.result.status,
            "detail": self.result.detail,
            "message_id": self.result.message_id,
            "location": self.location,
        }


def proof_addresses(values: Iterable[str]) -> tuple[str, ...]:
    """The addresses of `--test-to` (repeated, or comma-separated), checked, each once.

    Raises NewsletterError naming the first address that is not valid.
    """
    found: list[str] = []
    for value in values:
        for part in value.split(","):
            address = part.strip()
            if not address and "," in value:
                continue  # a stray comma, as in "a@x.org, b@x.org,"
            problem = email_problem(address)
            if problem:
                raise NewsletterError(problem)
            if address.lower() not in (a.lower() for a in found):
                found.append(address)
    if not found:
        raise NewsletterError("--test-to needs at least one email address")
    return tuple(found)


def variant_label(issue: Issue, variant: Variant) -> str:
    """Who gets `variant`, in a few words: the segments of the targeted sections it holds.

    A section with its own `audience` is what makes variants differ, so a
    variant is named by those segments ("health, police"); the variant
    without any such section goes to "everyone else", and an issue with no
    targeted sections has one variant, for "everyone".
    """
    chosen = set(variant.section_ids)
    targeted = [section for section in issue.sections if section.audience]
    segments: list[str] = []
    for section in targeted:
        if section.id in chosen:
            segments += [name for name in section.audience if name not in segments]
    if segments:
        return ", ".join(segments)
    return "everyone else" if targeted else "everyone"


def send_test_copies(
    project: Project,
    issue: Issue,
    addresses: str | Sequence[str],
    options: SendOptions | None = None,
    *,
    transport_factory: TransportFactory | None = None,
) -> list[Proof]:
    """Send one test copy of each variant to each address; touch no ledger.

    Each copy is rendered as that variant's recipients see it, personalised
    for a sample name, and addressed (and unsubscribed) to the test address.
    Of the options only the transport matters: a handful of copies needs no
    rate. The transport is asked to connect first, so one that cannot work
    stops with one message (ConfigError or DeliveryError) before any copy.
    """
    to = (addresses,) if isinstance(addresses, str) else tuple(addresses)
    settings = project.settings
    samples, _ = sample_recipients(project.audience_source(), issue)
    if not samples:  # each copy is a variant some recipient gets: with nobody, there is none
        raise NewsletterError(
            f"nobody is in the audience of {issue.id} yet, so there is no email to copy: add "
            "people to the lists in recipients/lists/ (docs/lists.md), then send test copies"
        )
    renderer = Renderer(project, issue)
    emails = []
    try:
        for _key, (sample, variant) in sorted(samples.items()):
            # The sample's variant-deciding details (agency, role) stay; their name does not.
            neutral = replace(sample, name=SAMPLE_RECIPIENT.name, organisation="", extra={})
            emails.append((variant, neutral, variant_label(issue, variant)))
            renderer.variant(variant)  # a template error shows before anything is sent
    except TemplateError as error:
        raise ContentError(render_error_problems(error, issue.path)) from None
    if transport_factory is not None:
        transport = transport_factory()
    else:
        transport = open_transport(settings, (options or SendOptions()).transport)
        if isinstance(transport, OutboxTransport):
            transport = transport.for_test_copies()  # apart from the real send: outbox/tests/
    # The Notify route sends its own version of the body: the copy carries it too.
    own_body = provider_body(settings, issue, (options or SendOptions()).transport)
    copies: list[Proof] = []
    try:
        connect_now(transport)
        for address in to:
            for variant, neutral, label in emails:
                recipient = replace(neutral, email=address.strip())
                email = renderer.personalise(variant, recipient)
                msg = build_message(settings, issue, recipient, email, test=label)
                body = own_body.render(variant, recipient) if own_body is not None else None
                outgoing = OutgoingMessage.of(recipient.email, msg, body)
                result = transport.send_batch([outgoing])[0]
                where = transport.location(result) if isinstance(transport, KeepsCopies) else None
                copies.append(Proof(address, variant, label, result, where))
    finally:
        transport.close()
    return copies
