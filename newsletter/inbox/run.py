"""`newsletter inbox`: act on what comes back, once.

For each message of a source (IMAP, Maildir, mbox) or record of a provider's
API: skip it if the inbox tables already hold its key; otherwise classify it
(`feedback.classify`), add the addresses of hard bounces, complaints and
unsubscribe requests to the suppression list (a policy bounce, such as a
blocklist or DMARC refusal, is recorded but suppresses nobody) (`suppression.add_suppression`),
record the message and its events (`inbox_store`), and only then tell the
source it is done (IMAP moves it to the processed folder). Unclassified
messages are neither recorded nor moved: they stay for a person, and are
listed every run until someone deals with them.

A dry run reads the same things and reports what would happen; it writes
nothing: no suppression, no ledger (not even its file), no IMAP move (the
folder is opened read-only).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal

from newsletter.audience.suppression import add_suppression, is_suppressed
from newsletter.core.project import Project
from newsletter.inbox.classify import (
    Classification,
    InboxContext,
    InboxEvent,
    classify,
    parse_bytes,
)
from newsletter.inbox.providers import ProviderRecord, poll_provider, provider_location
from newsletter.inbox.sources import MailSource
from newsletter.ledger.inbox_records import InboxStore, ProcessedMessage, recipient_lookup
from newsletter.render.message import sender_domain

Outcome = Literal["acted", "already-processed", "left"]
# The order and wording of the summary, one line per class.
SUMMARY_KINDS: tuple[tuple[str, str], ...] = (
    ("hard-bounce", "hard bounces"),
    (
        "policy-bounce",
        "refused for a reason that is not the address, e.g. a blocklist or DMARC "
        "(recorded, not suppressed)",
    ),
    ("soft-bounce", "delayed or temporary failures (recorded, not suppressed)"),
    ("complaint", "complaints"),
    ("unsubscribe", "unsubscribe requests"),
    ("auto-reply", "auto-replies (ignored)"),
)


@dataclass(frozen=True)
class InboxItemResult:
    """What happened to one message or provider record."""

    key: str
    ref: str
    sender: str
    subject: str
    classification: Classification
    outcome: Outcome
    suppressed: tuple[str, ...] = ()  # addresses added (or, in a dry run, that would be)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "ref": self.ref,
            "from": self.sender,
            "subject": self.subject,
            "class": self.classification.message_class,
            "outcome": self.outcome,
            "reason": self.classification.reason,
            "events": [e.as_dict() for e in self.classification.events],
            "suppressed": list(self.suppressed),
        }


@dataclass
class InboxReport:
    """Everything one `inbox` run saw and did."""

    source: str
    dry_run: bool
    items: list[InboxItemResult] = field(default_factory=list)

    def events(self, outcome: Outcome = "acted") -> list[InboxEvent]:
        return [e for i in self.items if i.outcome == outcome for e in i.classification.events]

    @property
    def unclassified(self) -> list[InboxItemResult]:
        return [i for i in self.items if i.outcome == "left"]

    @property
    def suppressed(self) -> list[str]:
        return [a for i in self.items for a in i.suppressed]

    def counts(self) -> dict[str, int]:
        kinds: Counter[str] = Counter(e.kind for e in self.events())
        counts = {kind: kinds.get(kind, 0) for kind, _ in SUMMARY_KINDS}
        counts["suppressed"] = len(self.suppressed)
        counts["already_processed"] = sum(1 for i in self.items if i.outcome == "already-processed")
        counts["unclassified"] = len(self.unclassified)
        return counts

    def summary_lines(self) -> list[str]:
        """One line per class, then the messages left for a person."""
        counts = self.counts()
        would = "would be " if self.dry_run else ""
        lines = [f"{'dry run: nothing changed; ' if self.dry_run else ''}read {self.source}"]
        for kind, label in SUMMARY_KINDS:
            line = f"{label}: {counts[kind]}"
            added = [a for i in self.items for e in i.classification.events if e.kind == kind
                     for a in i.suppressed if e.address and a.lower() == e.address.lower()]  # fmt: skip
            if kind in ("hard-bounce", "complaint", "unsubscribe"):
                line += f" ({len(set(added))} {would}added to the suppression list)"
            lines.append(line)
        lines.append(f"already processed: {counts['already_processed']} (skipped)")
        lines.append(f"not recognised, left in place: {counts['unclassified']}")
        for item in self.unclassified:
            lines.append(
                f"  {item.ref}: from {item.sender or '?'}, subject {item.subject or '(none)'!r}: "
                f"{item.classification.reason}"
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "suppressed": self.suppressed,
            "items": [i.as_dict() for i in self.items],
        }


def inbox_context(project: Project) -> InboxContext:
    settings = project.settings
    return InboxContext(
        unsubscribe_address=settings.unsubscribe_mailto,
        message_id_domain=sender_domain(settings),
        recipient_of=recipient_lookup(settings.ledger_path),
    )


def message_key(raw: bytes, message_id: str | None) -> str:
    """The key a message is remembered by: its Message-ID, else a hash of its bytes."""
    if message_id and message_id.strip():
        return "message-id:" + " ".join(message_id.split())
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class _Processor:
    """Applies classifications: suppresses, records, and builds the report."""

    def __init__(
        self, project: Project, store: InboxStore, source: str, dry_run: bool, today: date
    ) -> None:
        self.suppressed_path = project.paths.suppressed_path
        self.store = store
        self.report = InboxReport(source, dry_run)
        self.dry_run = dry_run
        self.today = today
        self._seen: set[str] = set()

    def known(self, key: str) -> bool:
        return key in self._seen or self.store.is_processed(key)

    def handle(
        self, key: str, ref: str, sender: str, subject: str, classification: Classification
    ) -> Outcome:
        if self.known(key):
            outcome: Outcome = "already-processed"
            self.report.items.append(
                InboxItemResult(key, ref, sender, subject, classification, outcome)
            )
            return outcome
        if classification.message_class == "unclassified":
            self.report.items.append(
                InboxItemResult(key, ref, sender, subject, classification, "left")
            )
            return "left"
        self._seen.add(key)
        added = self._suppress(classification.events)
        if not self.dry_run:
            self.store.record(
                ProcessedMessage(
                    key=key,
                    source=self.report.source,
                    message_class=classification.message_class,
                    sender=sender,
                    subject=subject,
                    events=classification.events,
                    suppressed=frozenset(a.lower() for a in added),
                )
            )
        self.report.items.append(
            InboxItemResult(key, ref, sender, subject, classification, "acted", tuple(added))
        )
        return "acted"

    def _suppress(self, events: Iterable[InboxEvent]) -> list[str]:
        added: list[str] = []
        for event in events:
            reason = event.suppression_reason
            if reason is None or event.address is None:
                continue
            if self.dry_run:
                if not is_suppressed(self.suppressed_path, event.address) and not any(
                    event.address.lower() == a.lower() for a in self.report.suppressed + added
                ):
                    added.append(event.address)
            elif add_suppression(self.suppressed_path, event.address, reason, self.today):
                added.append(event.address)
        return added


def process_mailbox(
    project: Project, source: MailSource, *, dry_run: bool = False, today: date | None = None
) -> InboxReport:
    """Read every message of `source` and act on it once; see the module docstring."""
    with InboxStore(project.settings.ledger_path, read_only=dry_run) as store:
        processor = _Processor(project, store, source.description, dry_run, today or date.today())
        context = inbox_context(project)
        for item in source.messages():
            message = parse_bytes(item.raw)
            message_id = str(message.get("Message-ID") or "") or None
            key = message_key(item.raw, message_id)
            sender = parseaddr(str(message.get("From") or ""))[1]
            subject = " ".join(str(message.get("Subject") or "").split())
            outcome = processor.handle(key, item.ref, sender, subject, classify(message, context))
            if outcome != "left" and not dry_run:
                source.done(item)
        return processor.report


def process_provider(
    project: Project,
    provider_name: str,
    *,
    dry_run: bool = False,
    today: date | None = None,
    poll: Callable[..., Iterable[ProviderRecord]] = poll_provider,
) -> InboxReport:
    """Poll a provider's bounce and complaint API and act on each new record once."""
    settings = project.settings
    with InboxStore(settings.ledger_path, read_only=dry_run) as store:
        processor = _Processor(
            project,
            store,
            f"{provider_name} API {provider_location(settings, provider_name)}",
            dry_run,
            today or date.today(),
        )
        domain = sender_domain(settings)
        for record in poll(settings, provider_name, processor.known, message_id_domain=domain):
            processor.handle(
                record.key, record.key, record.sender, record.subject, record.classification
            )
        return processor.report


def ledger_events(ledger_path: Path) -> list[dict[str, object]]:
    """Every event the inbox has recorded (for reports and tests)."""
    with InboxStore(ledger_path, read_only=True) as store:
        return store.events()
