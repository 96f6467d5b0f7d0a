"""`newsletter inbox`: act on what comes back, once.

For each message of a source (IMAP, Maildir, mbox) or record of a provider's
API: skip it if the inbox tables already hold its key; otherwise classify it
(`classify`), check that what mail says answers a message we sent to that
address (`verify`: provider records are trusted through their credentials),
add the addresses of verified hard bounces, complaints and unsubscribe
requests to the suppression list (a policy bounce, such as a blocklist or
DMARC refusal, is recorded but suppresses nobody), record the message and
its events (`inbox_records`), and only then tell the source it is done (IMAP
moves it to the processed folder). The adding and recording are done for a
batch of messages at a time (`applying`: one write of the list, then the
ledger), in the order the messages came, so the report says what each one
did exactly as if they had been applied one by one; a poll stopped part-way
leaves the messages of its unfinished batch unrecorded and in place, to be
read again next time.

What needs a person is listed every run it is seen: an event that proved
nothing (recorded as unverified, never applied; IMAP moves it to the
`newsletter-needs-a-person` folder), a message that cannot be read at all
(too big, nested too deep, a header or charset the parser chokes on: listed
by Message-ID or position, moved aside on IMAP, never recorded, so it never
stops the messages behind it), and an unclassified one (left where it is).
An address that is not a valid email address is never written to the list:
it is listed as refused.

A dry run reads the same things and reports what would happen; it writes
nothing: no suppression, no ledger (not even its file), no IMAP move (the
folder is opened read-only).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import date
from email.message import EmailMessage
from email.utils import parseaddr
from functools import partial
from pathlib import Path
from typing import Any, Literal

from newsletter.core.errors import UnreadableMessage
from newsletter.core.project import Project
from newsletter.inbox.applying import BATCH_SIZE, Applier, Handled, suppressions_wanted
from newsletter.inbox.classify import (
    Classification,
    InboxContext,
    InboxEvent,
    classify,
    parse_bytes,
)
from newsletter.inbox.providers import ProviderRecord, poll_provider, provider_location
from newsletter.inbox.sources import MailItem, MailSource
from newsletter.inbox.verify import SentMessages, Verifier
from newsletter.ledger.inbox_records import InboxStore, LedgerSentMessages, ProcessedMessage
from newsletter.ledger.list_events import list_files
from newsletter.render.message import sender_domain

Outcome = Literal["acted", "already-processed", "left", "unverified", "unreadable"]
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
_RAW_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*([^\r\n]*)")
_HEADER_SCAN = 64 * 1024


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
    refused: tuple[tuple[str, str], ...] = ()  # (address, why) never written to the list

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
            "refused": [{"address": a, "why": why} for a, why in self.refused],
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
    def needs_a_person(self) -> list[InboxItemResult]:
        """Messages that proved nothing, or could not be read: listed, never applied."""
        return [i for i in self.items if i.outcome in ("unverified", "unreadable")]

    @property
    def suppressed(self) -> list[str]:
        return [a for i in self.items for a in i.suppressed]

    def counts(self) -> dict[str, int]:
        kinds: Counter[str] = Counter(e.kind for e in self.events())
        counts = {kind: kinds.get(kind, 0) for kind, _ in SUMMARY_KINDS}
        counts["suppressed"] = len(self.suppressed)
        counts["already_processed"] = sum(1 for i in self.items if i.outcome == "already-processed")
        counts["unclassified"] = len(self.unclassified)
        counts["unverified"] = sum(1 for i in self.items if i.outcome == "unverified")
        counts["unreadable"] = sum(1 for i in self.items if i.outcome == "unreadable")
        counts["refused"] = sum(len(i.refused) for i in self.items)
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
        lines += [_item_line(item, item.classification.reason) for item in self.unclassified]
        lines.append(
            f"not verified or not readable, for a person (nothing changed): "
            f"{counts['unverified'] + counts['unreadable']}"
        )
        for item in self.needs_a_person:
            reasons = {e.unverified for e in item.classification.events if e.unverified}
            lines.append(_item_line(item, "; ".join(sorted(reasons)) or item.classification.reason))
        if counts["refused"]:
            lines.append(f"not valid email addresses, never added: {counts['refused']}")
            lines += [f"  {item.ref}: {why}" for item in self.items for _, why in item.refused]
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "suppressed": self.suppressed,
            "items": [i.as_dict() for i in self.items],
        }


def _item_line(item: InboxItemResult, why: str) -> str:
    sender = _printable(item.sender) or "?"
    return f"  {_printable(item.ref)}: from {sender}, subject {item.subject or '(none)'!r}: {why}"


def _printable(text: str) -> str:
    """`text` with control characters escaped: what an outsider wrote must not drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def verifier_for(project: Project, sent: LedgerSentMessages) -> Verifier:
    """The checks of returned mail: the project's key, list, domain and ledger."""
    settings = project.settings
    secret = settings.unsubscribe_secret.reveal() if settings.unsubscribe_secret else None
    lookups = SentMessages(sent.issue_ids, sent.was_sent, sent.recipient_of)
    return Verifier(secret, settings.list_id, sender_domain(settings), lookups)


def inbox_context(project: Project, verifier: Verifier) -> InboxContext:
    settings = project.settings
    return InboxContext(
        unsubscribe_address=settings.unsubscribe_mailto,
        message_id_domain=sender_domain(settings),
        recipient_of=verifier.sent.recipient_of,
        made_for=verifier.made_for,
    )


def message_key(raw: bytes, message_id: str | None) -> str:
    """The key a message is remembered by: its Message-ID, else a hash of its bytes."""
    if message_id and message_id.strip():
        return "message-id:" + " ".join(message_id.split())
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class _Processor:
    """Decides what each message is, applies them in batches (`applying`), and builds the report."""

    def __init__(
        self,
        project: Project,
        store: InboxStore,
        source: str,
        dry_run: bool,
        today: date,
        event_source: str = "inbox",
    ) -> None:
        self.store = store
        self.report = InboxReport(source, dry_run)
        self.applier = Applier(list_files(project), store, today, event_source, dry_run)
        self._seen: set[str] = set()
        self._pending: list[tuple[int, Handled]] = []  # (place in the report, message)
        self._then: list[Callable[[], None]] = []  # what waits for the pending to be recorded

    def known(self, key: str) -> bool:
        return key in self._seen or self.store.is_processed(key)

    def unreadable(self, ref: str, message_id: str, why: str) -> Outcome:
        """A message that could not be read: listed for a person, never recorded."""
        shown = f"{ref} ({message_id})" if message_id else ref
        classification = Classification("unclassified", reason=f"could not be read: {why}")
        self.report.items.append(InboxItemResult(ref, shown, "", "", classification, "unreadable"))
        return "unreadable"

    def handle(
        self, key: str, ref: str, sender: str, subject: str, classification: Classification
    ) -> Outcome:
        """What the message is; one to act on waits for its batch (`flush`) to be applied."""
        if self.known(key):
            outcome: Outcome = "already-processed"
        elif classification.message_class == "unclassified":
            outcome = "left"
        else:
            outcome = (
                "unverified" if any(not e.verified for e in classification.events) else "acted"
            )
        self.report.items.append(
            InboxItemResult(key, ref, sender, subject, classification, outcome)
        )
        if outcome in ("already-processed", "left"):
            return outcome
        self._seen.add(key)
        message = ProcessedMessage(
            key=key,
            source=self.report.source,
            message_class=classification.message_class,
            sender=sender,
            subject=subject,
            events=classification.events,
            suppressed=frozenset(),  # filled in once applied
        )
        wanted = suppressions_wanted(classification.events)
        self._pending.append((len(self.report.items) - 1, Handled(message, wanted)))
        if len(self._pending) >= BATCH_SIZE:
            self.flush()
        return outcome

    def when_recorded(self, action: Callable[[], None]) -> None:
        """Run `action` (a source's move) once every message handled so far is recorded."""
        if self._pending:
            self._then.append(action)
        else:
            action()

    def flush(self) -> None:
        """Apply the pending messages: their suppressions, then their records; then what waited."""
        pending, self._pending = self._pending, []
        results = self.applier.apply([handled for _, handled in pending])
        for (place, _), result in zip(pending, results, strict=True):
            item = self.report.items[place]
            self.report.items[place] = replace(
                item, suppressed=tuple(result.added), refused=result.refused
            )
        then, self._then = self._then, []
        for action in then:
            action()


def process_mailbox(
    project: Project, source: MailSource, *, dry_run: bool = False, today: date | None = None
) -> InboxReport:
    """Read every message of `source` and act on it once; see the module docstring."""
    with (
        InboxStore(project.settings.ledger_path, read_only=dry_run) as store,
        closing(LedgerSentMessages(project.settings.ledger_path)) as sent,
    ):
        processor = _Processor(project, store, source.description, dry_run, today or date.today())
        verifier = verifier_for(project, sent)
        context = inbox_context(project, verifier)
        for position, item in enumerate(source.messages(), 1):
            read = _read_message(item, context)
            if isinstance(read, str):
                processor.unreadable(item.ref or f"message {position}", _message_id(item), read)
                if not dry_run:
                    source.set_aside(item)
                continue
            message, key, sender, subject, classification = read
            checked = verifier.check(classification, message)
            outcome = processor.handle(key, item.ref, sender, subject, checked)
            if outcome == "unverified" and not dry_run:
                processor.when_recorded(partial(source.set_aside, item))
            elif outcome in ("acted", "already-processed") and not dry_run:
                processor.when_recorded(partial(source.done, item))
        processor.flush()
        return processor.report


_Read = tuple[EmailMessage, str, str, str, Classification]


def _read_message(item: MailItem, context: InboxContext) -> _Read | str:
    """Parse and classify one message, or say why it cannot be read.

    A message is hostile input and the standard library's parser raises more
    than its documented errors on one built to break it (IndexError on a
    malformed Message-ID, LookupError on an unknown charset, RecursionError
    on deep nesting), so anything raised here concerns this message only.
    Nothing here touches the ledger or the list.
    """
    try:
        message = parse_bytes(item.raw)
        message_id = str(message.get("Message-ID") or "") or None
        key = message_key(item.raw, message_id)
        sender = parseaddr(str(message.get("From") or ""))[1]
        subject = " ".join(str(message.get("Subject") or "").split())
        return message, key, sender, subject, classify(message, context)
    except UnreadableMessage as error:
        return str(error)
    except (Exception, RecursionError) as error:
        return f"the message is malformed ({type(error).__name__})"


def _message_id(item: MailItem) -> str:
    """The Message-ID as written in the raw bytes (for a person to find the message), if any."""
    match = _RAW_MESSAGE_ID.search(item.raw[:_HEADER_SCAN])
    return match.group(1).decode("ascii", "replace")[:200] if match else ""


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
            event_source=provider_name,
        )
        domain = sender_domain(settings)
        for record in poll(settings, provider_name, processor.known, message_id_domain=domain):
            processor.handle(
                record.key, record.key, record.sender, record.subject, record.classification
            )
        processor.flush()
        return processor.report


def ledger_events(ledger_path: Path) -> list[dict[str, object]]:
    """Every event the inbox has recorded (for reports and tests)."""
    with InboxStore(ledger_path, read_only=True) as store:
        return store.events()
