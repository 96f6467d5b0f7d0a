"""Test copies (proofs): one `[TEST]` copy of each variant to one address, before the real send.

Nothing is recorded in the ledger, so sending proofs never counts as sending
the issue.
"""

from __future__ import annotations

from dataclasses import replace

from newsletter.audience import sample_recipients
from newsletter.content import Issue
from newsletter.message import build_message
from newsletter.project import Project
from newsletter.render import Renderer
from newsletter.send import SendOptions, TransportFactory
from newsletter.transports import open_transport, provider_body
from newsletter.transports.base import DeliveryResult, OutgoingMessage


def send_test_copies(
    project: Project,
    issue: Issue,
    address: str,
    options: SendOptions | None = None,
    *,
    transport_factory: TransportFactory | None = None,
) -> list[tuple[str, DeliveryResult]]:
    """Send one `[TEST]` copy of each variant to `address`; touch no ledger.

    Each copy is personalised as the first real recipient of that variant
    would see it, but addressed (and unsubscribed) to `address`. Of the
    options only the transport matters: a handful of copies needs no rate.
    """
    settings = project.settings
    samples, _ = sample_recipients(project.audience_source(), issue)
    renderer = Renderer(project, issue)
    if transport_factory is not None:
        transport = transport_factory()
    else:
        transport = open_transport(settings, (options or SendOptions()).transport)
    # The Notify route sends its own version of the body: the copy carries it too.
    own_body = provider_body(settings, issue, (options or SendOptions()).transport)
    results: list[tuple[str, DeliveryResult]] = []
    try:
        for key, (sample, variant) in sorted(samples.items()):
            recipient = replace(sample, email=address.strip())
            email = renderer.personalise(variant, recipient)
            msg = build_message(settings, issue, recipient, email, test=True)
            body = own_body.render(variant, recipient) if own_body is not None else None
            outgoing = OutgoingMessage.of(recipient.email, msg, body)
            results.append((key, transport.send_batch([outgoing])[0]))
    finally:
        transport.close()
    return results
